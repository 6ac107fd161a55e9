// qmgr's scheduler: which message to work on next, and the folders it moves
// between. The per-message pipeline (route, deliver, record) is in
// message_job.cpp; queue commands in queue_commands.cpp.
#include "qmgr/queue_manager.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "libmail/system.hpp"
#include "qmgr/message_job.hpp"

namespace facteur::qmgr {
namespace {

constexpr int64_t kStaleTmpSeconds = 3600;

int64_t now_seconds() { return static_cast<int64_t>(std::time(nullptr)); }

// Files in a folder that are not queue files (tmp names) and were not
// touched for an hour: left by a crash mid-write, never acknowledged.
void remove_stale(const std::string& folder, bool only_dot_tmp) {
    DIR* dir = opendir(folder.c_str());
    if (!dir) return;
    int64_t now = now_seconds();
    while (dirent* entry = readdir(dir)) {
        std::string name = entry->d_name;
        if (name == "." || name == "..") continue;
        if (only_dot_tmp && !(name.front() == '.' && name.size() > 4 && name.ends_with(".tmp"))) continue;
        std::string path = folder + "/" + name;
        struct stat info {};
        if (lstat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) continue;
        if (now - info.st_mtime < kStaleTmpSeconds) continue;
        if (unlink(path.c_str()) == 0) log::info("removed stale unfinished queue file {}", path);
    }
    closedir(dir);
}

}  // namespace

QueueManager::QueueManager(event::Loop& loop, queue::Spool spool, Settings settings, auth_lookup::Client& authd,
                           ipc::AsyncClient& deliverd, RelayPool& relayd, event::WorkerPool& pool)
    : loop_(loop),
      spool_(std::move(spool)),
      settings_(std::move(settings)),
      authd_(authd),
      deliverd_(deliverd),
      relayd_(relayd),
      pool_(pool),
      pump_timer_(loop, [this] { pump(); }),
      scan_timer_(loop,
                  [this] {
                      incoming_dirty_ = maildrop_dirty_ = true;
                      pump();
                  }),
      deferred_timer_(loop, [this] { pump(); }),
      cleanup_timer_(loop, [this] { cleanup_stale_files(); }) {}

QueueManager::~QueueManager() { *alive_ = false; }

Status QueueManager::recover() {
    if (Status s = spool_.create_folders(); !s) return s;
    // A crash (or kill -9) left these mid-delivery: they start over, and
    // their status logs keep every outcome already recorded (DESIGN §3).
    auto active = spool_.list(queue::Folder::active);
    if (!active) return make_error(active.error());
    for (const std::string& id : *active) {
        if (Status s = spool_.move(id, queue::Folder::active, queue::Folder::incoming); !s) return s;
        log::info("{}: recovered from active/ after an interrupted delivery", id);
    }
    remove_stale(spool_.folder_path(queue::Folder::tmp), false);
    remove_stale(spool_.folder_path(queue::Folder::maildrop), true);

    auto deferred = spool_.list(queue::Folder::deferred);
    if (!deferred) return make_error(deferred.error());
    for (const std::string& id : *deferred) {
        auto status = queue::read_status_log(spool_, id, 0);
        schedule_deferred(id, status ? status->next_attempt : 0);
    }
    auto held = spool_.list(queue::Folder::hold);
    if (!held) return make_error(held.error());
    for (const std::string& id : *held) waiting_[id] = Entry{queue::Folder::hold, 0};

    // Status logs whose message is gone (a crash between the two unlinks).
    auto logs = spool_.list(queue::Folder::log);
    if (logs) {
        for (const std::string& id : *logs) {
            if (spool_.locate(id)) continue;
            unlink(spool_.log_path(id).c_str());
        }
    }
    log::info("queue recovered: {} deferred, {} held, {} back from active/", deferred->size(), held->size(),
              active->size());
    return {};
}

void QueueManager::start() {
    scan_timer_.start_repeating(settings_.scan_interval);
    cleanup_timer_.start_repeating(std::chrono::hours(1));
    schedule_pump();
}

void QueueManager::wakeup() {
    incoming_dirty_ = maildrop_dirty_ = true;
    schedule_pump();
}

void QueueManager::stop(std::function<void()> done) {
    stopping_ = true;
    scan_timer_.cancel();
    deferred_timer_.cancel();
    pump_timer_.cancel();
    cleanup_timer_.cancel();
    if (in_flight_.empty() || all_waiting_on_relayd()) {
        if (!in_flight_.empty()) log_abandoned();
        done();
        return;
    }
    stopped_ = std::move(done);
}

void QueueManager::log_abandoned() const {
    // A relayd request may take many minutes: qmgr does not wait. The files
    // stay in active/ and start over at the next start (DESIGN §3: at worst
    // a recipient gets the message twice).
    log::info("{} message(s) waiting for relayd stay queued and are retried at the next start", in_flight_.size());
}

void QueueManager::schedule_pump() {
    // Coalesces a burst of wake-ups into one pass on the next loop turn.
    if (!pump_timer_.pending()) pump_timer_.start(std::chrono::milliseconds(0));
}

void QueueManager::pump() {
    if (stopping_) return;
    // Messages waiting only for relayd do not hold local delivery slots
    // (relayd's own limit is relay_concurrency, in the RelayPool).
    auto room = [this] {
        return in_flight_.size() - relay_jobs_ < settings_.concurrency && in_flight_.size() < settings_.active_limit;
    };
    // Round robin between the sources so none starves the others.
    static constexpr int kSources = 3;
    int idle_sources = 0;
    int source = 0;
    while (room() && idle_sources < kSources) {
        bool started = false;
        switch (source) {
        case 0: started = start_due_deferred(); break;
        case 1: started = start_incoming(); break;
        case 2: started = start_maildrop(); break;
        }
        idle_sources = started ? 0 : idle_sources + 1;
        source = (source + 1) % kSources;
    }
    arm_deferred_timer();
}

bool QueueManager::start_due_deferred() {
    if (due_.empty() || due_.begin()->first > now_seconds()) return false;
    std::string id = due_.begin()->second;
    due_.erase(due_.begin());
    auto entry = waiting_.find(id);
    if (entry == waiting_.end() || entry->second.folder != queue::Folder::deferred) return true;
    waiting_.erase(entry);
    activate(id, queue::Folder::deferred);
    return true;
}

bool QueueManager::start_incoming() {
    if (incoming_.empty() && incoming_dirty_) {
        incoming_dirty_ = false;
        auto ids = spool_.list(queue::Folder::incoming);
        if (!ids) {
            log::error("cannot scan incoming: {}", ids.error());
            return false;
        }
        for (std::string& id : *ids)
            if (!in_flight_.count(id)) incoming_.push_back(std::move(id));
    }
    while (!incoming_.empty()) {
        std::string id = std::move(incoming_.front());
        incoming_.pop_front();
        if (in_flight_.count(id)) continue;
        activate(id, queue::Folder::incoming);
        return true;
    }
    return false;
}

bool QueueManager::start_maildrop() {
    if (maildrop_.empty() && maildrop_dirty_) {
        maildrop_dirty_ = false;
        auto ids = spool_.list(queue::Folder::maildrop);
        if (!ids) {
            log::error("cannot scan maildrop: {}", ids.error());
            return false;
        }
        for (std::string& id : *ids)
            if (!in_flight_.count(id)) maildrop_.push_back(std::move(id));
    }
    while (!maildrop_.empty()) {
        std::string id = std::move(maildrop_.front());
        maildrop_.pop_front();
        if (in_flight_.count(id)) continue;
        convert_maildrop(id);
        return true;
    }
    return false;
}

void QueueManager::activate(const std::string& id, queue::Folder from) {
    std::string source = spool_.file_path(from, id);
    std::string target = spool_.file_path(queue::Folder::active, id);
    // No fsync: after a crash the file is in one folder or the other, and
    // qmgr looks in both (DESIGN §3: only the acceptance must be durable).
    if (rename(source.c_str(), target.c_str()) != 0) {
        if (errno != ENOENT) log::error("{}: cannot move to active: {}", id, system::errno_text(errno));
        return;
    }
    in_flight_[id] = Pending::none;
    auto job = std::make_shared<Job>();
    job->id = id;
    job->path = target;
    pool_.submit<Status>(
        [job, spool = spool_]() -> Status {
            auto reader = queue::Reader::open(job->path);
            if (!reader) return make_error(reader.error());
            job->envelope = reader->envelope();
            auto status = queue::read_status_log(spool, job->id, job->envelope.recipients.size());
            if (!status) return make_error(status.error());
            job->status = std::move(*status);
            return {};
        },
        [this, job, alive = alive_](Status status) {
            if (!*alive) return;
            if (!status) {
                log::warning("{}: unreadable queue file, moved to corrupt/: {}", job->id, status.error());
                if (Status moved = spool_.move(job->id, queue::Folder::active, queue::Folder::corrupt); !moved)
                    log::error("{}: {}", job->id, moved.error());
                finished(job->id);
                return;
            }
            if (job->status.all_done()) {
                // Every outcome was logged before a crash; only the cleanup
                // (and maybe the report) is left.
                record(job);
                return;
            }
            log::info("{}: from=<{}>, size={}, nrcpt={} (queue active)", job->id, log::printable(job->envelope.sender),
                      job->envelope.message_size, job->envelope.recipients.size());
            route(job);
        });
}

void QueueManager::schedule_deferred(const std::string& id, int64_t next_attempt) {
    waiting_[id] = Entry{queue::Folder::deferred, next_attempt};
    due_.emplace(next_attempt, id);
}

void QueueManager::arm_deferred_timer() {
    // Drop schedule entries for messages that left deferred/ meanwhile.
    while (!due_.empty()) {
        auto entry = waiting_.find(due_.begin()->second);
        if (entry != waiting_.end() && entry->second.folder == queue::Folder::deferred &&
            entry->second.next_attempt == due_.begin()->first)
            break;
        due_.erase(due_.begin());
    }
    if (due_.empty() || stopping_) {
        deferred_timer_.cancel();
        return;
    }
    int64_t wait = std::max<int64_t>(0, due_.begin()->first - now_seconds());
    // A retry that is due but finds no free slot is picked up when a job ends.
    deferred_timer_.start(std::chrono::seconds(std::max<int64_t>(wait, 1)));
}

void QueueManager::finished(const std::string& id) {
    in_flight_.erase(id);
    if (stopping_) {
        if ((in_flight_.empty() || all_waiting_on_relayd()) && stopped_) {
            if (!in_flight_.empty()) log_abandoned();
            auto done = std::move(stopped_);
            stopped_ = nullptr;
            done();
        }
        return;
    }
    schedule_pump();
}

void QueueManager::cleanup_stale_files() {
    pool_.submit(
        [spool = spool_] {
            remove_stale(spool.folder_path(queue::Folder::tmp), false);
            remove_stale(spool.folder_path(queue::Folder::maildrop), true);
        },
        [] {});
}

}  // namespace facteur::qmgr
