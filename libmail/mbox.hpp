// mbox (RFC 4155, mboxrd quoting) as deliverd appends to it and pop3d/imapd
// read it: the From_ line, From-quoting, dot-locking plus fcntl locking, and
// an append that never leaves half a message behind.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

#include "libmail/result.hpp"
#include "libmail/store.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::store {

// <mail_path>/mbox: a user's INBOX in mbox format.
std::string mbox_path(std::string_view mail_path);

// RFC 4155 §2: "From <sender> <asctime date>\n", the date in UTC as
// asctime(3) writes it ("Thu Nov 19 10:00:00 2026"). The null sender is
// written MAILER-DAEMON; a sender containing whitespace or control
// characters (it would break the line) has them replaced by '_'.
std::string from_line(std::string_view sender, std::time_t time);

// mboxrd quoting, streamed: every line matching ^>*From  (note the space)
// gets one more '>' in front, so a reader can undo it exactly. Lines may be
// split across chunks anywhere. Pure, no I/O.
class FromQuoter {
public:
    // The quoted form of `chunk` (a prefix of a candidate line is held back
    // until it is decided).
    std::string feed(std::string_view chunk);
    // What is still held back.
    std::string finish();

private:
    void decide(std::string& out);
    bool at_line_start_ = true;
    std::string pending_;  // the start of a line that may still become ">*From "
};

// Undoes mboxrd quoting of one line (for readers): ">From " -> "From ",
// ">>From " -> ">From "; other lines unchanged.
std::string_view unquote_from_line(std::string_view line);

// The lock protocol for an mbox file.
struct LockSettings {
    // How long to wait for the dot-lock and for the fcntl lock, each.
    std::chrono::milliseconds timeout{30'000};
    // A dot-lock older than this is left over from a crash and is removed
    // (the classic 5 minutes of procmail, mutt and Dovecot).
    std::chrono::seconds stale_after{300};
    std::chrono::milliseconds retry_interval{50};
};

// Both locks of an mbox held at once, released on destruction (fcntl lock
// first, then the dot-lock file). Open-file-description locks (F_OFD_SETLK)
// are used: they conflict with the classic fcntl locks of other mail
// programs and, unlike those, also between threads of this process.
class MboxLock {
public:
    // Takes "<path>.lock" (O_EXCL; stale ones removed) then a write lock on
    // `fd`, each retried until settings.timeout; failure to get one in time
    // is an error with os_error EAGAIN.
    static Result<MboxLock> acquire(const std::string& path, int fd, const LockSettings& settings, int& os_error);
    MboxLock(MboxLock&& other) noexcept;
    MboxLock& operator=(MboxLock&& other) noexcept;
    MboxLock(const MboxLock&) = delete;
    MboxLock& operator=(const MboxLock&) = delete;
    ~MboxLock();

private:
    MboxLock() = default;
    void release();
    std::string dotlock_path_;
    int fd_ = -1;  // not owned: the caller's open mbox
};

// Appends one message to the mbox at `path` (created 0600 when missing):
// both locks, the From_ line, the message with mboxrd quoting, a final
// newline if the message lacks one, then the empty line that separates
// messages; fsync. On any failure (write error, full disk, unreadable
// source) the file is truncated back to its size before the append, so
// readers never see half a message. The source gives LF line endings.
WriteOutcome deliver_to_mbox(const std::string& path, std::string_view sender, std::time_t time,
                             const MessageSource& source, const LockSettings& settings = {});

// Bytes used by an mbox (its size; 0 when missing).
Result<uint64_t> mbox_usage(const std::string& path);

}  // namespace facteur::store
