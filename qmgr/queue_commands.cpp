// The admin's queue commands on qmgr's socket (queue_control): list and show
// read the spool on the worker pool; hold, release, delete, requeue and
// flush move files, which only qmgr does (DESIGN §3).
#include <unistd.h>

#include <ctime>

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "libmail/message_header.hpp"
#include "libmail/system.hpp"
#include "qmgr/queue_manager.hpp"

namespace facteur::qmgr {
namespace {

constexpr size_t kMaxListed = 2000;

Result<queue_control::MessageInfo> describe(const queue::Spool& spool, queue::Folder folder, const std::string& id,
                                            std::string* headers) {
    queue_control::MessageInfo info;
    info.id = id;
    info.folder = std::string(queue::folder_name(folder));
    info.arrival = queue::queue_id_time(id);
    if (folder == queue::Folder::corrupt) return info;
    auto reader = queue::Reader::open(spool.file_path(folder, id));
    if (!reader) return make_error(reader.error());
    const queue::Envelope& envelope = reader->envelope();
    info.size = reader->message_size();
    info.arrival = envelope.arrival_time;
    info.sender = envelope.sender;
    auto status = queue::read_status_log(spool, id, envelope.recipients.size());
    if (status) info.next_attempt = status->next_attempt;
    for (size_t i = 0; i < envelope.recipients.size(); ++i) {
        queue_control::RecipientInfo recipient;
        recipient.address = envelope.recipients[i].address;
        if (status) {
            const queue::RecipientStatus& s = status->recipients[i];
            recipient.state = std::string(queue::recipient_state_name(s.state));
            recipient.dsn = s.dsn;
            recipient.reason = s.reason;
        } else {
            recipient.state = "pending";
        }
        info.recipients.push_back(std::move(recipient));
    }
    if (headers) {
        auto prefix = reader->message_prefix(queue_control::kMaxHeaders);
        if (prefix) *headers = prefix->substr(0, message::header_length(*prefix));
    }
    return info;
}

queue_control::Listing list_spool(const queue::Spool& spool) {
    queue_control::Listing listing;
    for (queue::Folder folder : {queue::Folder::active, queue::Folder::incoming, queue::Folder::deferred,
                                 queue::Folder::hold, queue::Folder::maildrop, queue::Folder::corrupt}) {
        auto ids = spool.list(folder);
        if (!ids) continue;
        for (const std::string& id : *ids) {
            if (listing.messages.size() >= kMaxListed) {
                ++listing.truncated;
                continue;
            }
            // A file that moved on while we looked is simply skipped.
            auto info = describe(spool, folder, id, nullptr);
            if (info) listing.messages.push_back(std::move(*info));
        }
    }
    return listing;
}

}  // namespace

void QueueManager::handle_control(const ipc::Frame& frame, bool privileged, std::function<void(ipc::Frame)> respond) {
    auto request = queue_control::decode_request(frame);
    if (!request) {
        respond(ipc::error_reply(request.error()));
        return;
    }
    if (queue_control::is_mutating(request->op) && !privileged) {
        respond(ipc::error_reply("permission denied: only root and the mail owner may change the queue"));
        return;
    }
    switch (request->op) {
    case queue_control::Op::wakeup:
        wakeup();
        respond(ipc::ok_reply());
        return;
    case queue_control::Op::list:
        pool_.submit<queue_control::Listing>([spool = spool_] { return list_spool(spool); },
                                             [respond](queue_control::Listing listing) {
                                                 respond(queue_control::list_reply(listing));
                                             });
        return;
    case queue_control::Op::show: {
        struct Shown {
            Result<queue_control::MessageInfo> info = make_error("no such message");
            std::string headers;
        };
        pool_.submit<std::shared_ptr<Shown>>(
            [spool = spool_, id = request->id] {
                auto shown = std::make_shared<Shown>();
                auto folder = spool.locate(id);
                if (folder) shown->info = describe(spool, *folder, id, &shown->headers);
                else shown->info = make_error(fmt::format("no message {} in the queue", id));
                return shown;
            },
            [respond](std::shared_ptr<Shown> shown) {
                if (!shown->info) respond(ipc::error_reply(shown->info.error()));
                else respond(queue_control::show_reply(*shown->info, shown->headers));
            });
        return;
    }
    case queue_control::Op::flush:
        flush(*request, std::move(respond));
        return;
    case queue_control::Op::hold:
    case queue_control::Op::release:
    case queue_control::Op::remove:
    case queue_control::Op::requeue: {
        uint64_t count = apply(request->op, request->id);
        if (count == 0 && request->id != "all") {
            respond(ipc::error_reply(fmt::format("no message {} in the queue{}", request->id,
                                                 request->op == queue_control::Op::release ? " on hold" : "")));
            return;
        }
        schedule_pump();
        respond(queue_control::count_reply(count));
        return;
    }
    }
    respond(ipc::error_reply("unknown operation"));
}

void QueueManager::flush(const queue_control::Request& request, std::function<void(ipc::Frame)> respond) {
    incoming_dirty_ = maildrop_dirty_ = true;
    std::vector<std::string> deferred;
    for (const auto& [id, entry] : waiting_)
        if (entry.folder == queue::Folder::deferred) deferred.push_back(id);
    if (request.domain.empty()) {
        uint64_t count = retry_now(deferred);
        log::info("queue flush requested: {} deferred message(s) retried now", count);
        respond(queue_control::count_reply(count));
        return;
    }
    // ETRN / queue flush DOMAIN (RFC 1985): only the messages with a
    // recipient still to do in that domain. Their envelopes and logs are
    // read on the worker pool.
    pool_.submit<std::vector<std::string>>(
        [spool = spool_, deferred = std::move(deferred), domain = request.domain, subdomains = request.subdomains] {
            std::vector<std::string> matching;
            for (const std::string& id : deferred) {
                auto reader = queue::Reader::open(spool.file_path(queue::Folder::deferred, id));
                if (!reader) continue;  // moved on meanwhile
                const queue::Envelope& envelope = reader->envelope();
                auto status = queue::read_status_log(spool, id, envelope.recipients.size());
                if (!status) continue;
                for (size_t i = 0; i < envelope.recipients.size(); ++i) {
                    queue::RecipientState state = status->recipients[i].state;
                    bool done = state == queue::RecipientState::sent || state == queue::RecipientState::bounced ||
                                state == queue::RecipientState::expanded;
                    if (!done && queue_control::address_in_domain(envelope.recipients[i].address, domain, subdomains)) {
                        matching.push_back(id);
                        break;
                    }
                }
            }
            return matching;
        },
        [this, respond = std::move(respond), domain = request.domain, subdomains = request.subdomains,
         alive = alive_](std::vector<std::string> matching) {
            if (!*alive) return;
            uint64_t count = retry_now(matching);
            log::info("queue flush requested for {}{}: {} deferred message(s) retried now", subdomains ? "@" : "",
                      domain, count);
            respond(queue_control::count_reply(count));
        });
}

// Makes deferred messages due now; the pump activates them at once (as
// many as the concurrency limits allow, the rest as slots free up).
uint64_t QueueManager::retry_now(const std::vector<std::string>& ids) {
    uint64_t count = 0;
    for (const std::string& id : ids) {
        auto entry = waiting_.find(id);
        // Gone, on hold, or already in delivery since the list was made.
        if (entry == waiting_.end() || entry->second.folder != queue::Folder::deferred) continue;
        entry->second.next_attempt = 0;
        due_.emplace(0, id);
        ++count;
    }
    schedule_pump();
    return count;
}

uint64_t QueueManager::apply(queue_control::Op op, const std::string& id_or_all) {
    if (id_or_all != "all") return apply_one(op, id_or_all) ? 1 : 0;
    std::vector<std::string> ids;
    for (const auto& [id, entry] : waiting_) ids.push_back(id);
    for (const auto& [id, pending] : in_flight_) ids.push_back(id);
    for (queue::Folder folder : {queue::Folder::incoming, queue::Folder::corrupt}) {
        if (op == queue_control::Op::release) break;
        if (folder == queue::Folder::corrupt && op != queue_control::Op::remove) continue;
        if (auto listed = spool_.list(folder)) ids.insert(ids.end(), listed->begin(), listed->end());
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    uint64_t count = 0;
    for (const std::string& id : ids)
        if (apply_one(op, id)) ++count;
    return count;
}

bool QueueManager::apply_one(queue_control::Op op, const std::string& id) {
    if (auto flight = in_flight_.find(id); flight != in_flight_.end()) {
        // Being delivered right now: done when the attempt ends.
        if (op == queue_control::Op::hold) flight->second = Pending::hold;
        else if (op == queue_control::Op::remove) flight->second = Pending::remove;
        else return false;
        return true;
    }
    auto folder = spool_.locate(id);
    if (!folder || *folder == queue::Folder::active || *folder == queue::Folder::maildrop) return false;
    auto drop = [&] { waiting_.erase(id); };
    switch (op) {
    case queue_control::Op::hold:
        if (*folder == queue::Folder::hold || *folder == queue::Folder::corrupt) return false;
        if (Status s = spool_.move(id, *folder, queue::Folder::hold); !s) {
            log::error("{}: {}", id, s.error());
            return false;
        }
        waiting_[id] = Entry{queue::Folder::hold, 0};
        log::info("{}: put on hold by the administrator", id);
        return true;
    case queue_control::Op::release:
        if (*folder != queue::Folder::hold) return false;
        // Released mail is tried at once, like new mail.
        if (Status s = spool_.move(id, *folder, queue::Folder::incoming); !s) {
            log::error("{}: {}", id, s.error());
            return false;
        }
        drop();
        incoming_dirty_ = true;
        log::info("{}: released from hold by the administrator", id);
        return true;
    case queue_control::Op::requeue:
        if (*folder == queue::Folder::incoming || *folder == queue::Folder::corrupt) return false;
        if (Status s = spool_.move(id, *folder, queue::Folder::incoming); !s) {
            log::error("{}: {}", id, s.error());
            return false;
        }
        drop();
        incoming_dirty_ = true;
        log::info("{}: requeued by the administrator", id);
        return true;
    case queue_control::Op::remove:
        if (unlink(spool_.file_path(*folder, id).c_str()) != 0) return false;
        unlink(spool_.log_path(id).c_str());
        drop();
        log::info("{}: removed by the administrator", id);
        return true;
    default: return false;
    }
}

}  // namespace facteur::qmgr
