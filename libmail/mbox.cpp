// mbox appends: From_ line, mboxrd quoting, dot-lock + fcntl lock, and
// truncation back to the old size on any failure.
#include "libmail/mbox.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "libmail/system.hpp"

namespace facteur::store {
namespace {

constexpr std::string_view kFrom = "From ";
// Times deliver_to_mbox reopens an mbox replaced between its open and its
// lock before giving up with a temporary error.
constexpr int kOpenAttempts = 10;


using Clock = std::chrono::steady_clock;

// Takes "<path>.lock" with O_EXCL (the lock every mbox program honours);
// one left by a crash is recognised by its age and removed.
Status take_dotlock(const std::string& lock_path, const LockSettings& settings, int& os_error) {
    Clock::time_point deadline = Clock::now() + settings.timeout;
    for (;;) {
        UniqueFd fd(open(lock_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (fd) {
            // The pid helps an admin who finds a stale lock; its write
            // failing does not make the lock less held.
            std::string pid = fmt::format("{}\n", getpid());
            (void)system::write_all(fd.get(), pid);
            return {};
        }
        if (errno != EEXIST) {
            os_error = errno;
            return make_error(fmt::format("cannot create {}: {}", lock_path, system::errno_text(errno)));
        }
        struct stat info {};
        if (lstat(lock_path.c_str(), &info) == 0 &&
            time(nullptr) - info.st_mtime > static_cast<time_t>(settings.stale_after.count())) {
            // Stale: its holder died. Another process may remove it at the
            // same time; whoever then creates it first wins, as usual.
            unlink(lock_path.c_str());
            continue;
        }
        if (Clock::now() >= deadline) {
            os_error = EAGAIN;
            return make_error(fmt::format("mailbox is locked: {} held for more than {} ms", lock_path,
                                          settings.timeout.count()));
        }
        std::this_thread::sleep_for(settings.retry_interval);
    }
}

// F_OFD_SETLK in a bounded loop rather than F_SETLKW: a blocking wait could
// only be bounded with alarm(), which a multi-threaded daemon cannot use.
Status take_fcntl_lock(int fd, const std::string& path, const LockSettings& settings, int& os_error) {
    Clock::time_point deadline = Clock::now() + settings.timeout;
    for (;;) {
        struct flock lock {};
        lock.l_type = F_WRLCK;
        lock.l_whence = SEEK_SET;
        if (fcntl(fd, F_OFD_SETLK, &lock) == 0) return {};
        if (errno != EAGAIN && errno != EACCES && errno != EINTR) {
            os_error = errno;
            return make_error(fmt::format("cannot lock {}: {}", path, system::errno_text(errno)));
        }
        if (Clock::now() >= deadline) {
            os_error = EAGAIN;
            return make_error(fmt::format("mailbox is locked: {} (fcntl) held for more than {} ms", path,
                                          settings.timeout.count()));
        }
        std::this_thread::sleep_for(settings.retry_interval);
    }
}

}  // namespace

std::string mbox_path(std::string_view mail_path) {
    std::string path(mail_path);
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    return path + "/mbox";
}

std::string from_line(std::string_view sender, std::time_t time) {
    std::string who = sender.empty() ? std::string("MAILER-DAEMON") : std::string(sender);
    for (char& c : who) {
        unsigned char byte = static_cast<unsigned char>(c);
        if (byte <= 0x20 || byte == 0x7f) c = '_';
    }
    struct tm utc {};
    gmtime_r(&time, &utc);
    static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    // asctime(3) format, written out: asctime itself is not thread-safe.
    return fmt::format("From {} {} {} {:2} {:02}:{:02}:{:02} {}\n", who, kDays[utc.tm_wday % 7], kMonths[utc.tm_mon % 12],
                       utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, utc.tm_year + 1900);
}

void FromQuoter::decide(std::string& out) {
    size_t quotes = pending_.find_first_not_of('>');
    if (quotes == std::string::npos) return;  // only '>' so far: undecided
    std::string_view rest = std::string_view(pending_).substr(quotes);
    if (rest == kFrom) {
        // RFC 4155 §2 / mboxrd: one more '>' for every ^>*From  line.
        out += '>';
        out += pending_;
        pending_.clear();
        at_line_start_ = false;
    } else if (rest.size() < kFrom.size() && kFrom.substr(0, rest.size()) == rest) {
        return;  // still a prefix of "From "
    } else {
        out += pending_;
        at_line_start_ = pending_.back() == '\n';
        pending_.clear();
    }
}

std::string FromQuoter::feed(std::string_view chunk) {
    std::string out;
    out.reserve(chunk.size() + 16);
    size_t i = 0;
    while (i < chunk.size()) {
        if (at_line_start_) {
            pending_ += chunk[i++];
            decide(out);
            continue;
        }
        size_t newline = chunk.find('\n', i);
        if (newline == std::string_view::npos) {
            out.append(chunk.substr(i));
            break;
        }
        out.append(chunk.substr(i, newline - i + 1));
        i = newline + 1;
        at_line_start_ = true;
    }
    return out;
}

std::string FromQuoter::finish() {
    std::string out = std::move(pending_);
    pending_.clear();
    at_line_start_ = true;
    return out;
}

std::string_view unquote_from_line(std::string_view line) {
    size_t quotes = line.find_first_not_of('>');
    if (quotes == 0 || quotes == std::string_view::npos) return line;
    if (line.substr(quotes).substr(0, kFrom.size()) != kFrom) return line;
    return line.substr(1);
}

Result<MboxLock> MboxLock::acquire(const std::string& path, int fd, const LockSettings& settings, int& os_error) {
    MboxLock lock;
    std::string dotlock = path + ".lock";
    if (Status taken = take_dotlock(dotlock, settings, os_error); !taken) return make_error(taken.error());
    lock.dotlock_path_ = dotlock;
    if (Status taken = take_fcntl_lock(fd, path, settings, os_error); !taken) return make_error(taken.error());
    lock.fd_ = fd;
    return lock;
}

MboxLock::MboxLock(MboxLock&& other) noexcept
    : dotlock_path_(std::exchange(other.dotlock_path_, {})), fd_(std::exchange(other.fd_, -1)) {}

MboxLock& MboxLock::operator=(MboxLock&& other) noexcept {
    if (this != &other) {
        release();
        dotlock_path_ = std::exchange(other.dotlock_path_, {});
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

MboxLock::~MboxLock() { release(); }

void MboxLock::release() {
    if (fd_ >= 0) {
        struct flock lock {};
        lock.l_type = F_UNLCK;
        lock.l_whence = SEEK_SET;
        fcntl(fd_, F_OFD_SETLK, &lock);
        fd_ = -1;
    }
    if (!dotlock_path_.empty()) {
        unlink(dotlock_path_.c_str());
        dotlock_path_.clear();
    }
}

WriteOutcome deliver_to_mbox(const std::string& path, std::string_view sender, std::time_t time,
                             const MessageSource& source, const LockSettings& settings) {
    if (Status made = make_directories(system::parent_directory(path), 0700); !made)
        return WriteOutcome::failure(errno, made.error());
    UniqueFd fd;
    std::optional<MboxLock> lock;
    struct stat info {};
    // The file is opened before it is locked, and a POP3 commit renames a
    // rewritten mbox over the path while holding the lock: a lock then
    // taken on the old file protects nothing, and mail appended to it would
    // be lost with it. So, once locked, the path must still name our file.
    for (int attempt = 0; attempt < kOpenAttempts && !lock; ++attempt) {
        fd.reset(open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!fd)
            return WriteOutcome::failure(errno, fmt::format("cannot open {}: {}", path, system::errno_text(errno)));
        if (fstat(fd.get(), &info) != 0)
            return WriteOutcome::failure(errno, fmt::format("cannot stat {}: {}", path, system::errno_text(errno)));
        if (!S_ISREG(info.st_mode)) return WriteOutcome::failure(0, fmt::format("{} is not a regular file", path));

        int lock_error = 0;
        auto acquired = MboxLock::acquire(path, fd.get(), settings, lock_error);
        if (!acquired) return WriteOutcome::failure(lock_error, acquired.error());
        struct stat named {};
        if (stat(path.c_str(), &named) == 0 && named.st_dev == info.st_dev && named.st_ino == info.st_ino)
            lock.emplace(std::move(*acquired));
    }
    if (!lock)
        return WriteOutcome::failure(EAGAIN, fmt::format("{} keeps being replaced by another program", path));

    // The size under the lock is what a failed append returns the file to.
    if (fstat(fd.get(), &info) != 0)
        return WriteOutcome::failure(errno, fmt::format("cannot stat {}: {}", path, system::errno_text(errno)));
    const off_t original_size = info.st_size;

    uint64_t written = 0;
    int write_error = 0;
    char last = '\n';
    auto put = [&](std::string_view data) {
        if (data.empty()) return true;
        if (int error = system::write_all(fd.get(), data); error != 0) {
            write_error = error;
            return false;
        }
        written += data.size();
        last = data.back();
        return true;
    };
    auto fail = [&](int os_error, std::string message) {
        // Never leave half a message: a reader would take the rest of the
        // file for garbage, or worse, a later From_ line for part of it.
        if (ftruncate(fd.get(), original_size) == 0) fsync(fd.get());
        return WriteOutcome::failure(os_error, std::move(message));
    };

    FromQuoter quoter;
    bool ok = put(from_line(sender, time));
    Status read = {};
    if (ok) read = source([&](std::string_view chunk) { return put(quoter.feed(chunk)); });
    if (write_error == 0 && read) {
        ok = put(quoter.finish());
        // RFC 4155 §2: the message ends with a line end, and an empty line
        // separates it from the next From_ line.
        if (ok && last != '\n') ok = put("\n");
        if (ok) ok = put("\n");
    }
    if (write_error != 0)
        return fail(write_error, fmt::format("cannot write {}: {}", path, system::errno_text(write_error)));
    if (!read) return fail(0, read.error());
    if (fsync(fd.get()) != 0) {
        int error = errno;
        return fail(error, fmt::format("fsync {}: {}", path, system::errno_text(error)));
    }
    WriteOutcome outcome;
    outcome.path = path;
    outcome.size = written;
    return outcome;
}

Result<uint64_t> mbox_usage(const std::string& path) {
    struct stat info {};
    if (stat(path.c_str(), &info) != 0) {
        if (errno == ENOENT) return uint64_t{0};
        return make_error(fmt::format("cannot stat {}: {}", path, system::errno_text(errno)));
    }
    return static_cast<uint64_t>(info.st_size);
}

}  // namespace facteur::store
