// The mbox INBOX as pop3d reads it (RFC 4155, mboxrd): a snapshot scanned
// under the mbox locks, messages read lazily with pread in bounded pieces,
// and a commit that rewrites the file through a temporary file and rename.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <numeric>
#include <vector>

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "libmail/mailbox_internal.hpp"
#include "libmail/mailbox_mbox_parse.hpp"
#include "libmail/mbox.hpp"
#include "libmail/system.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::store::detail {
namespace {

constexpr size_t kScanPiece = 32 * 1024;  // scan, check and copy pieces
constexpr size_t kReaderPiece = 8 * 1024;  // a reader's memory stays near 2x this
// Opening, then locking, an mbox that a commit renamed a new file over in
// between gets the old file: tried again this many times.
constexpr int kOpenAttempts = 10;
// A header block to add "Status: RO" to is read into memory whole; a bigger
// one (absurd, but possible) keeps its message unmarked.
constexpr size_t kMaxRewrittenHeader = 256 * 1024;

Result<size_t> pread_some(int fd, char* buffer, size_t size, uint64_t offset, const std::string& path) {
    for (;;) {
        ssize_t n = pread(fd, buffer, size, static_cast<off_t>(offset));
        if (n >= 0) return static_cast<size_t>(n);
        if (errno == EINTR) continue;
        return make_error(fmt::format("cannot read {}: {}", path, system::errno_text(errno)));
    }
}

// An open mbox with both locks held; the lock goes before the descriptor.
struct LockedMbox {
    UniqueFd fd;
    MboxLock lock;
    uint64_t size = 0;  // under the lock
};

// Opens and locks the mbox; nullopt when there is none. The file is opened
// before it is locked, so a commit may have renamed a new file over the
// path in between: then the lock is on a dead file, and we start again.
Result<std::optional<LockedMbox>> open_locked(const std::string& path, const LockSettings& settings) {
    for (int attempt = 0; attempt < kOpenAttempts; ++attempt) {
        UniqueFd fd(open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
        if (!fd) {
            if (errno == ENOENT) return std::optional<LockedMbox>();
            return make_error(fmt::format("cannot open {}: {}", path, system::errno_text(errno)));
        }
        struct stat opened {};
        if (fstat(fd.get(), &opened) != 0)
            return make_error(fmt::format("cannot stat {}: {}", path, system::errno_text(errno)));
        if (!S_ISREG(opened.st_mode)) return make_error(fmt::format("{} is not a regular file", path));
        int os_error = 0;
        auto lock = MboxLock::acquire(path, fd.get(), settings, os_error);
        if (!lock) return make_error(lock.error());
        struct stat named {};
        if (stat(path.c_str(), &named) == 0 && named.st_dev == opened.st_dev && named.st_ino == opened.st_ino) {
            if (fstat(fd.get(), &opened) != 0)
                return make_error(fmt::format("cannot stat {}: {}", path, system::errno_text(errno)));
            return std::optional<LockedMbox>(
                LockedMbox{std::move(fd), std::move(*lock), static_cast<uint64_t>(opened.st_size)});
        }
    }
    return make_error(fmt::format("{} keeps being replaced; try again later", path));
}

class MboxReader final : public MessageReader {
public:
    MboxReader(UniqueFd fd, std::string path, const MboxMessage& message)
        : fd_(std::move(fd)), path_(std::move(path)), position_(message.content_start), end_(message.content_end),
          expected_(message.size), raw_(kReaderPiece, '\0') {}

    Result<size_t> read(char* buffer, size_t capacity) override {
        if (capacity == 0) return size_t{0};
        while (out_position_ == out_.size() && !finished_) {
            out_.clear();
            out_position_ = 0;
            if (position_ < end_) {
                size_t want = static_cast<size_t>(std::min<uint64_t>(raw_.size(), end_ - position_));
                auto got = pread_some(fd_.get(), raw_.data(), want, position_, path_);
                if (!got) return make_error(got.error());
                if (*got == 0) return make_error(fmt::format("{} was truncated by another program", path_));
                position_ += *got;
                filter_.feed(std::string_view(raw_.data(), *got), out_);
            } else {
                filter_.finish(out_);
                finished_ = true;
            }
            counter_.feed(out_);
            // Never serve other bytes than the size the client was told.
            if (counter_.size() > expected_ || (finished_ && counter_.size() != expected_))
                return make_error(fmt::format("{} was changed by another program", path_));
        }
        size_t n = std::min(capacity, out_.size() - out_position_);
        std::memcpy(buffer, out_.data() + out_position_, n);
        out_position_ += n;
        return n;
    }

private:
    UniqueFd fd_;
    std::string path_;
    uint64_t position_, end_, expected_;
    MboxFilter filter_;
    ServedSizeCounter counter_;
    std::string raw_, out_;
    size_t out_position_ = 0;
    bool finished_ = false;
};

// The temporary file a commit writes: buffered writes, removed unless kept.
class TemporaryFile {
public:
    explicit TemporaryFile(std::string path) : path_(std::move(path)) {}
    ~TemporaryFile() {
        if (created_) unlink(path_.c_str());
    }
    TemporaryFile(const TemporaryFile&) = delete;
    TemporaryFile& operator=(const TemporaryFile&) = delete;

    Status create() {
        fd_.reset(open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (!fd_) return make_error(fmt::format("cannot create {}: {}", path_, system::errno_text(errno)));
        created_ = true;
        buffer_.reserve(kScanPiece);
        return {};
    }
    Status write(std::string_view bytes) {
        if (bytes.empty()) return {};
        if (buffer_.size() + bytes.size() > kScanPiece)
            if (Status flushed = flush(); !flushed) return flushed;
        if (bytes.size() >= kScanPiece) {
            if (int error = system::write_all(fd_.get(), bytes); error != 0)
                return make_error(fmt::format("cannot write {}: {}", path_, system::errno_text(error)));
        } else {
            buffer_.append(bytes);
        }
        // The last bytes written, to tell whether a message ends with its
        // separating empty line.
        tail_ = (tail_ + std::string(bytes.substr(bytes.size() > 3 ? bytes.size() - 3 : 0)));
        if (tail_.size() > 3) tail_.erase(0, tail_.size() - 3);
        return {};
    }
    bool ends_with_empty_line() const {
        std::string_view tail(tail_);
        return (tail.size() >= 2 && tail.substr(tail.size() - 2) == "\n\n") || tail == "\n\r\n";
    }
    bool ends_with_newline() const { return !tail_.empty() && tail_.back() == '\n'; }
    Status flush() {
        if (int error = system::write_all(fd_.get(), buffer_); error != 0)
            return make_error(fmt::format("cannot write {}: {}", path_, system::errno_text(error)));
        buffer_.clear();
        return {};
    }
    // Flushed, fsynced and closed: ready to be renamed.
    Status complete() {
        if (Status flushed = flush(); !flushed) return flushed;
        if (fsync(fd_.get()) != 0) return make_error(fmt::format("fsync {}: {}", path_, system::errno_text(errno)));
        if (close(fd_.release()) != 0)
            return make_error(fmt::format("close {}: {}", path_, system::errno_text(errno)));
        return {};
    }
    void renamed() { created_ = false; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    UniqueFd fd_;
    bool created_ = false;
    std::string buffer_;
    std::string tail_;
};

std::atomic<uint64_t> temporary_counter{0};


class MboxInbox final : public Mailbox {
public:
    MboxInbox(std::string path, LockSettings settings) : path_(std::move(path)), settings_(settings) {}

    Status scan();

    Format format() const override { return Format::mbox; }
    size_t count() const override { return messages_.size(); }
    std::string_view uid(size_t index) const override {
        const MboxMessage& message = at(index);
        return std::string_view(uids_).substr(message.uid_offset, message.uid_length);
    }
    uint64_t size(size_t index) const override { return at(index).size; }
    bool seen(size_t index) const override { return at(index).seen; }
    Result<std::unique_ptr<MessageReader>> open_message(size_t index) override;
    Result<CommitReport> commit(const std::vector<size_t>& to_delete, const std::vector<size_t>& to_mark_seen) override;

private:
    const MboxMessage& at(size_t index) const {
        if (index >= messages_.size()) panic(fmt::format("Mailbox: message index {} of {}", index, messages_.size()));
        return messages_[index];
    }
    uint64_t message_end(size_t index) const {
        return index + 1 < messages_.size() ? messages_[index + 1].from_offset : snapshot_end_;
    }
    void number_duplicates();
    Status still_ours(const LockedMbox& locked, std::string& buffer) const;
    Status copy(const LockedMbox& locked, uint64_t from, uint64_t to, TemporaryFile& file, std::string& buffer) const;
    Result<bool> write_seen(const LockedMbox& locked, size_t index, TemporaryFile& file, std::string& buffer) const;

    std::string path_;
    LockSettings settings_;
    UniqueFd fd_;                 // the snapshot's file, read without locks
    uint64_t snapshot_end_ = 0;   // its size when scanned
    std::string uids_;
    std::vector<MboxMessage> messages_;
    bool committed_ = false;
};

Status MboxInbox::scan() {
    auto locked = open_locked(path_, settings_);
    if (!locked) return make_error(locked.error());
    if (!*locked) return {};  // no mbox yet: an empty INBOX
    LockedMbox& mbox = **locked;
    // Mail appended after this point (deliverd waits for our lock) belongs
    // to the next session.
    snapshot_end_ = mbox.size;
    MboxScanner scanner(uids_, messages_);
    std::string buffer(kScanPiece, '\0');
    for (uint64_t offset = 0; offset < snapshot_end_;) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), snapshot_end_ - offset));
        auto got = pread_some(mbox.fd.get(), buffer.data(), want, offset, path_);
        if (!got) return make_error(got.error());
        if (*got == 0) return make_error(fmt::format("{} shrank while locked", path_));
        scanner.feed(std::string_view(buffer.data(), *got));
        offset += *got;
    }
    if (Status finished = scanner.finish(); !finished) return make_error(fmt::format("{}: {}", path_, finished.error()));
    number_duplicates();
    messages_.shrink_to_fit();
    uids_.shrink_to_fit();
    fd_ = std::move(mbox.fd);  // the lock on it goes with `locked`, after this
    return {};
}

// Two messages with the same From_ line and header (a copy resent as it
// was): the later ones get "-2", "-3"... in file order, the same in every
// session. Found by sorting indexes, not with a map of every id.
void MboxInbox::number_duplicates() {
    std::vector<uint32_t> order(messages_.size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return uid(a) < uid(b); });
    std::vector<std::pair<uint32_t, uint32_t>> copies;  // (index, copy number >= 2), usually none
    for (size_t i = 1, run = 1; i < order.size(); ++i) {
        run = uid(order[i]) == uid(order[i - 1]) ? run + 1 : 1;
        if (run > 1) copies.emplace_back(order[i], static_cast<uint32_t>(run));
    }
    if (copies.empty()) return;
    std::sort(copies.begin(), copies.end());
    std::string renumbered;
    renumbered.reserve(uids_.size() + copies.size() * 4);
    auto copy = copies.begin();
    for (uint32_t index = 0; index < messages_.size(); ++index) {
        MboxMessage& message = messages_[index];
        std::string_view id = uid(index);
        uint32_t offset = static_cast<uint32_t>(renumbered.size());
        renumbered += id;
        if (copy != copies.end() && copy->first == index) renumbered += fmt::format("-{}", (copy++)->second);
        message.uid_offset = offset;
        message.uid_length = static_cast<uint8_t>(renumbered.size() - offset);
    }
    uids_ = std::move(renumbered);
}

Result<std::unique_ptr<MessageReader>> MboxInbox::open_message(size_t index) {
    if (index >= messages_.size()) return make_error(fmt::format("no message {} in {}", index + 1, path_));
    // A reader of its own, so it does not depend on this object's lifetime;
    // pread keeps both from sharing a file offset.
    UniqueFd fd(fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd) return make_error(fmt::format("cannot duplicate the descriptor of {}: {}", path_, system::errno_text(errno)));
    return std::unique_ptr<MessageReader>(std::make_unique<MboxReader>(std::move(fd), path_, messages_[index]));
}

// The file under the lock must still begin with the snapshot's messages,
// each From_ line where it was: otherwise another program rewrote it and
// our offsets mean nothing any more.
Status MboxInbox::still_ours(const LockedMbox& locked, std::string& buffer) const {
    if (locked.size < snapshot_end_)
        return make_error(fmt::format("{} shrank since the session started (rewritten by another program)", path_));
    for (const MboxMessage& message : messages_) {
        Fnv fnv;
        for (uint64_t offset = message.from_offset; offset < message.content_start;) {
            size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), message.content_start - offset));
            auto got = pread_some(locked.fd.get(), buffer.data(), want, offset, path_);
            if (!got) return make_error(got.error());
            if (*got == 0) break;
            fnv.update(std::string_view(buffer.data(), *got));
            offset += *got;
        }
        if (fnv.value != message.from_hash)
            return make_error(fmt::format("{} was rewritten by another program since the session started", path_));
    }
    return {};
}

Status MboxInbox::copy(const LockedMbox& locked, uint64_t from, uint64_t to, TemporaryFile& file,
                       std::string& buffer) const {
    while (from < to) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), to - from));
        auto got = pread_some(locked.fd.get(), buffer.data(), want, from, path_);
        if (!got) return make_error(got.error());
        if (*got == 0) return make_error(fmt::format("{} shrank while locked", path_));
        if (Status written = file.write(std::string_view(buffer.data(), *got)); !written) return written;
        from += *got;
    }
    return {};
}

// MboxMessage `index` with "Status: RO" in its header; false when its header
// block is too big to rewrite (then it is copied as it was).
Result<bool> MboxInbox::write_seen(const LockedMbox& locked, size_t index, TemporaryFile& file,
                                   std::string& buffer) const {
    const MboxMessage& message = messages_[index];
    uint64_t header_size = message.header_end - message.content_start;
    if (header_size > kMaxRewrittenHeader) {
        log::warning("mbox={} message={} header of {} bytes too big to mark seen", log::printable(path_), index + 1,
                     header_size);
        if (Status copied = copy(locked, message.from_offset, message_end(index), file, buffer); !copied)
            return make_error(copied.error());
        return false;
    }
    std::string header(static_cast<size_t>(header_size), '\0');
    for (size_t done = 0; done < header.size();) {
        auto got = pread_some(locked.fd.get(), header.data() + done, header.size() - done,
                              message.content_start + done, path_);
        if (!got) return make_error(got.error());
        if (*got == 0) return make_error(fmt::format("{} shrank while locked", path_));
        done += *got;
    }
    if (Status copied = copy(locked, message.from_offset, message.content_start, file, buffer); !copied)
        return make_error(copied.error());
    if (Status written = file.write(with_status_seen(header)); !written) return make_error(written.error());
    if (Status copied = copy(locked, message.header_end, message_end(index), file, buffer); !copied)
        return make_error(copied.error());
    return true;
}

Result<CommitReport> MboxInbox::commit(const std::vector<size_t>& to_delete, const std::vector<size_t>& to_mark_seen) {
    if (committed_) return make_error(fmt::format("{}: the session's changes were already committed", path_));
    enum Action : uint8_t { keep, mark_seen, remove };
    std::vector<Action> actions(messages_.size(), keep);
    for (size_t index : to_mark_seen) {
        if (index >= messages_.size()) return make_error(fmt::format("commit: no message {}", index + 1));
        if (!messages_[index].seen) actions[index] = mark_seen;
    }
    for (size_t index : to_delete) {  // delete wins over \Seen
        if (index >= messages_.size()) return make_error(fmt::format("commit: no message {}", index + 1));
        actions[index] = remove;
    }
    // Nothing to change: the file is not even opened (RFC 1939 §6 leaves
    // an untouched maildrop as it was).
    if (std::all_of(actions.begin(), actions.end(), [](Action action) { return action == keep; }))
        return CommitReport{};

    auto locked = open_locked(path_, settings_);
    if (!locked) return make_error(locked.error());
    if (!*locked) return make_error(fmt::format("{} was removed by another program; nothing changed", path_));
    const LockedMbox& mbox = **locked;
    std::string buffer(kScanPiece, '\0');
    if (Status ours = still_ours(mbox, buffer); !ours) return make_error(ours.error() + "; nothing changed");

    TemporaryFile file(fmt::format("{}.facteur-{}-{}.tmp", path_, getpid(), ++temporary_counter));
    if (Status created = file.create(); !created) return make_error(created.error());
    CommitReport report;
    // Bytes before the first From_ line are no message but not ours to drop.
    uint64_t first = messages_.empty() ? snapshot_end_ : messages_.front().from_offset;
    if (Status copied = copy(mbox, 0, first, file, buffer); !copied) return make_error(copied.error());
    for (size_t index = 0; index < messages_.size(); ++index) {
        if (actions[index] == remove) {
            ++report.deleted;
            continue;
        }
        if (actions[index] == mark_seen) {
            auto marked = write_seen(mbox, index, file, buffer);
            if (!marked) return make_error(marked.error());
            if (*marked) ++report.marked_seen;
        } else if (Status copied = copy(mbox, messages_[index].from_offset, message_end(index), file, buffer);
                   !copied) {
            return make_error(copied.error());
        }
        // RFC 4155 §2: an empty line before the next From_ line, even where
        // another program forgot it at the end of the file.
        if (!file.ends_with_empty_line())
            if (Status written = file.write(file.ends_with_newline() ? "\n" : "\n\n"); !written)
                return make_error(written.error());
    }
    // Mail delivered during the session, exactly as deliverd wrote it.
    if (Status copied = copy(mbox, snapshot_end_, mbox.size, file, buffer); !copied) return make_error(copied.error());
    if (Status completed = file.complete(); !completed) return make_error(completed.error());
    if (rename(file.path().c_str(), path_.c_str()) != 0)
        return make_error(fmt::format("cannot rename {} to {}: {}", file.path(), path_, system::errno_text(errno)));
    file.renamed();
    committed_ = true;
    if (Status synced = system::fsync_directory(system::parent_directory(path_)); !synced)
        log::warning("mbox={} commit applied but not yet durable: {}", log::printable(path_), synced.error());
    return report;
}

}  // namespace

Result<std::unique_ptr<Mailbox>> open_mbox_inbox(const std::string& path, const OpenOptions& options) {
    auto inbox = std::make_unique<MboxInbox>(path, options.mbox_lock);
    if (Status scanned = inbox->scan(); !scanned) return make_error(scanned.error());
    return std::unique_ptr<Mailbox>(std::move(inbox));
}

}  // namespace facteur::store::detail
