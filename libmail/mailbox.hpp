// The read side of the mail store (DESIGN §2 `store`): a user's INBOX as
// pop3d (and later imapd) sees it — a snapshot of its messages with stable
// unique ids and exact sizes, each message's bytes, and one commit of \Seen
// flags and deletions. Maildir and mbox backends behind one interface.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/mbox.hpp"
#include "libmail/result.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::store {

enum class Format { maildir, mbox };
// "maildir" or "mbox" (authd's user `format`); anything else is an error.
Result<Format> parse_format(std::string_view name);
std::string_view format_name(Format format);

// How a stored message is served: every LF not preceded by CR becomes CRLF
// (files hold LF line endings; a CRLF already there is kept). `served_size`
// counts the bytes of that form — what POP3 STAT/LIST and IMAP RFC822.SIZE
// report. Maildir's W=<n> in a file name is this number for our files.
uint64_t served_size(std::string_view stored_bytes);
// Streaming form of served_size for text arriving in chunks.
class ServedSizeCounter {
public:
    void feed(std::string_view chunk);
    uint64_t size() const { return size_; }

private:
    uint64_t size_ = 0;
    bool last_was_cr_ = false;
};

// Reads one message of a snapshot from its start, in stored form (LF line
// endings; for mbox the From_ line removed, mboxrd quoting undone and the
// mbox-internal headers Status, X-Status, X-Keywords, X-UID, X-IMAP,
// X-IMAPbase and Content-Length left out — exactly the bytes whose
// served_size the snapshot reported).
class MessageReader {
public:
    virtual ~MessageReader();
    // Up to `capacity` bytes into `buffer`; 0 at the end of the message.
    virtual Result<size_t> read(char* buffer, size_t capacity) = 0;
};

// What a commit did.
struct CommitReport {
    size_t deleted = 0;        // messages removed
    size_t marked_seen = 0;    // messages that got \Seen
    size_t already_gone = 0;   // to delete but removed meanwhile by someone else (not an error)
};

// A snapshot of a user's INBOX taken when it was opened. Mail delivered
// after that is not in it (the next session sees it) and is never touched
// by commit. Indexes are 0-based positions in the snapshot, oldest first.
// Not thread-safe: one session uses one Mailbox.
class Mailbox {
public:
    virtual ~Mailbox();
    virtual Format format() const = 0;
    virtual size_t count() const = 0;
    // Stable unique id (POP3 UIDL, RFC 1939 §7): 1..70 characters in
    // 0x21..0x7E, never reused for another message of this mailbox, the same
    // in every session, after restarts and after imapd changed the message's
    // flags. Maildir: the file's unique base name (before ':' and ','), or
    // the MD5 hex of it when that is longer than 70 or has other bytes.
    // mbox: MD5 hex of the From_ line and the header (without the
    // mbox-internal headers), "-2", "-3"... added to later exact duplicates.
    virtual std::string_view uid(size_t index) const = 0;
    // served_size of the message.
    virtual uint64_t size(size_t index) const = 0;
    // \Seen when the snapshot was taken (Maildir ":2,...S"; mbox Status: R).
    virtual bool seen(size_t index) const = 0;
    // Opens message `index` (< count()). An error when it vanished meanwhile
    // (e.g. another program removed the file).
    virtual Result<std::unique_ptr<MessageReader>> open_message(size_t index) = 0;
    // Applies a session's changes in one go (POP3 UPDATE state): each index
    // in `to_delete` is removed, each in `to_mark_seen` gets \Seen (kept
    // messages only). Messages not in the snapshot stay untouched.
    // Maildir: rename new/X -> cur/X:2,S (or add S to cur/X:2,<flags>),
    // unlink deleted files, fsync the directories; a file whose name changed
    // meanwhile (flags set by another program) is found again by its base.
    // mbox: under the dot-lock and fcntl lock, the kept messages and
    // everything appended after the snapshot are written to a temporary file
    // in the same folder, fsynced and renamed over the mbox (crash-safe: at
    // any moment either the old or the new mbox is complete); refused,
    // changing nothing, when the mbox no longer starts with the snapshot's
    // messages (another program rewrote it).
    virtual Result<CommitReport> commit(const std::vector<size_t>& to_delete,
                                        const std::vector<size_t>& to_mark_seen) = 0;
};

struct OpenOptions {
    LockSettings mbox_lock;  // mbox: locks are held only while scanning and committing
};

// Opens the INBOX under `mail_path` (authd's user mail_path): Maildir at
// maildir_path(mail_path), mbox at mbox_path(mail_path). A mailbox that
// does not exist yet is empty (nothing is created). Blocking file I/O: call
// it off the event loop for large mailboxes.
Result<std::unique_ptr<Mailbox>> open_inbox(const std::string& mail_path, Format format,
                                            const OpenOptions& options = {});

// One POP3 session per mailbox (RFC 1939 §8): an exclusive, non-blocking
// flock(2) on "<mail_path>/pop3.lock" (the folder is created 0700 when
// missing), held until the object goes away. It does not stop deliverd or
// imapd; it stops a second POP3 session, also from another pop3d process.
class SessionLock {
public:
    // nullopt: another session holds it (the caller answers [IN-USE]).
    // An error: the lock file could not be created or locked.
    static Result<std::optional<SessionLock>> try_acquire(const std::string& mail_path);
    SessionLock(SessionLock&&) noexcept = default;
    SessionLock& operator=(SessionLock&&) noexcept = default;

private:
    explicit SessionLock(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

}  // namespace facteur::store
