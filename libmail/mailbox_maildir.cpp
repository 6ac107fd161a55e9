// The Maildir INBOX as pop3d reads it: a readdir-only snapshot of new/ and
// cur/ stored compactly, messages read straight from their files, and a
// commit made of renames (\Seen) and unlinks that follows files renamed
// meanwhile by another program. Layout: https://cr.yp.to/proto/maildir.html
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "libmail/maildir.hpp"
#include "libmail/mailbox_internal.hpp"
#include "libmail/system.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::store::detail {
namespace {

struct DirectoryCloser {
    void operator()(DIR* directory) const { closedir(directory); }
};
using Directory = std::unique_ptr<DIR, DirectoryCloser>;

constexpr size_t kMaxName = 255;  // NAME_MAX: every name fits the compact entry
constexpr size_t kReadPiece = 16 * 1024;
// A file renamed again while we chase it (imapd busy on the same message):
// a few rescans, then it counts as gone.
constexpr int kRescans = 3;

// The unique part of a file name: before the ":2,<flags>" info and before
// Dovecot's ",S=<size>,W=<size>" fields, neither of which identifies it.
std::string_view base_of(std::string_view name) { return name.substr(0, name.find_first_of(":,")); }

// The flags of a ":2,<flags>" info part; nullopt without one (new/ files,
// or the experimental ":1," info nobody uses).
std::optional<std::string_view> flags_of(std::string_view name) {
    size_t colon = name.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    std::string_view info = name.substr(colon + 1);
    if (info.substr(0, 2) != "2,") return std::nullopt;
    return info.substr(2);
}

bool seen_in_name(std::string_view name) {
    auto flags = flags_of(name);
    return flags && flags->find('S') != std::string_view::npos;
}

// The name in cur/ of a message that got \Seen: ":2,S" added, or 'S'
// inserted among the flags, which stay in ASCII order (Maildir spec).
// nullopt for an info part that is not ":2," (not ours to rewrite).
std::optional<std::string> seen_name(std::string_view name) {
    size_t colon = name.find(':');
    if (colon == std::string_view::npos) return std::string(name) + ":2,S";
    auto flags = flags_of(name);
    if (!flags) return std::nullopt;
    if (flags->find('S') != std::string_view::npos) return std::string(name);
    std::string out(name.substr(0, colon + 3));
    bool inserted = false;
    for (char flag : *flags) {
        if (!inserted && flag > 'S') {
            out += 'S';
            inserted = true;
        }
        out += flag;
    }
    if (!inserted) out += 'S';
    return out;
}

// Leading decimal digits of `text` (consumed), if any and if they fit.
std::optional<uint64_t> take_number(std::string_view& text) {
    size_t digits = 0;
    uint64_t value = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
        if (digits == 19) return std::nullopt;
        value = value * 10 + static_cast<uint64_t>(text[digits] - '0');
        ++digits;
    }
    if (digits == 0) return std::nullopt;
    text.remove_prefix(digits);
    return value;
}

// Delivery time of a name "<seconds>.M<usec>..." (Dovecot and our
// deliverd; older names "<seconds>.<pid>.<host>" give only seconds). A name
// without a leading number sorts after all those with one.
struct Age {
    uint64_t seconds = std::numeric_limits<uint64_t>::max();
    uint64_t microseconds = 0;
};

Age age_of(std::string_view base) {
    Age age;
    auto seconds = take_number(base);
    if (!seconds) return age;
    age.seconds = *seconds;
    if (base.substr(0, 2) == ".M") {
        base.remove_prefix(2);
        if (auto microseconds = take_number(base)) age.microseconds = *microseconds;
    }
    return age;
}

// One message of the snapshot in 16 bytes; its name lives in the arena.
struct Entry {
    uint64_t size;         // served size
    uint32_t name_offset;  // into the arena
    uint8_t name_length;   // <= kMaxName
    uint8_t base_length;
    uint8_t flags;
};
constexpr uint8_t kInCur = 1, kSeen = 2, kHashedUid = 4;

class FileReader final : public MessageReader {
public:
    FileReader(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
    Result<size_t> read(char* buffer, size_t capacity) override {
        for (;;) {
            ssize_t n = ::read(fd_.get(), buffer, capacity);
            if (n >= 0) return static_cast<size_t>(n);
            if (errno == EINTR) continue;
            return make_error(fmt::format("cannot read {}: {}", path_, system::errno_text(errno)));
        }
    }

private:
    UniqueFd fd_;
    std::string path_;
};

class MaildirInbox final : public Mailbox {
public:
    explicit MaildirInbox(std::string maildir) : maildir_(std::move(maildir)) {}

    Status scan();

    Format format() const override { return Format::maildir; }
    size_t count() const override { return entries_.size(); }
    std::string_view uid(size_t index) const override {
        const Entry& entry = at(index);
        if (entry.flags & kHashedUid) return std::string_view(arena_).substr(entry.name_offset + entry.name_length, 32);
        return std::string_view(arena_).substr(entry.name_offset, entry.base_length);
    }
    uint64_t size(size_t index) const override { return at(index).size; }
    bool seen(size_t index) const override { return (at(index).flags & kSeen) != 0; }
    Result<std::unique_ptr<MessageReader>> open_message(size_t index) override;
    Result<CommitReport> commit(const std::vector<size_t>& to_delete, const std::vector<size_t>& to_mark_seen) override;

private:
    const Entry& at(size_t index) const {
        if (index >= entries_.size()) panic(fmt::format("Mailbox: message index {} of {}", index, entries_.size()));
        return entries_[index];
    }
    std::string_view name(const Entry& entry) const {
        return std::string_view(arena_).substr(entry.name_offset, entry.name_length);
    }
    std::string_view base(size_t index) const {
        return std::string_view(arena_).substr(at(index).name_offset, at(index).base_length);
    }
    // "new/<name>" or "cur/<name>": where the message is now, as far as we know.
    std::string relative_path(size_t index) const;
    Status scan_directory(bool in_cur, std::vector<char>& buffer);  // buffer: for files without W=
    // Finds the current names of messages by their base names (one pass
    // over new/ and cur/): index -> "cur/<name>".
    Result<std::map<size_t, std::string>> locate(const std::vector<size_t>& indexes) const;

    std::string maildir_;
    std::string arena_;            // the names, each followed by its MD5 uid when it needs one
    std::vector<Entry> entries_;   // oldest first
    std::map<size_t, std::string> moved_;  // found under a new name since the snapshot
};

std::string MaildirInbox::relative_path(size_t index) const {
    if (auto found = moved_.find(index); found != moved_.end()) return found->second;
    const Entry& entry = at(index);
    return fmt::format("{}/{}", (entry.flags & kInCur) ? "cur" : "new", name(entry));
}

// The served size of a file without W= in its name (dropped in by another
// program), read in bounded pieces; nullopt when it is gone or not a file.
std::optional<uint64_t> measure(int directory_fd, const char* name, const std::string& directory,
                                std::vector<char>& buffer) {
    // O_NONBLOCK: a FIFO someone left there must not hang the scan.
    UniqueFd fd(openat(directory_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd) {
        if (errno != ENOENT && errno != ELOOP)
            log::warning("maildir={} file={} skipped: {}", log::printable(directory), log::printable(name),
                         system::errno_text(errno));
        return std::nullopt;
    }
    struct stat info {};
    if (fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) return std::nullopt;
    if (buffer.empty()) buffer.resize(kReadPiece);
    ServedSizeCounter counter;
    for (;;) {
        ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            log::warning("maildir={} file={} skipped: {}", log::printable(directory), log::printable(name),
                         system::errno_text(errno));
            return std::nullopt;
        }
        if (n == 0) break;
        counter.feed(std::string_view(buffer.data(), static_cast<size_t>(n)));
    }
    return counter.size();
}

Status MaildirInbox::scan_directory(bool in_cur, std::vector<char>& buffer) {
    std::string path = maildir_ + (in_cur ? "/cur" : "/new");
    Directory directory(opendir(path.c_str()));
    if (!directory) {
        if (errno == ENOENT) return {};
        return make_error(fmt::format("cannot open {}: {}", path, system::errno_text(errno)));
    }
    for (;;) {
        errno = 0;
        dirent* item = readdir(directory.get());
        if (item == nullptr) {
            if (errno != 0) return make_error(fmt::format("cannot read {}: {}", path, system::errno_text(errno)));
            break;
        }
        std::string_view file = item->d_name;
        // Dot files are no messages (the spec's rule for readers), and a
        // directory, link or device is nothing a Maildir program puts there.
        if (file.empty() || file[0] == '.' || file.size() > kMaxName) continue;
        if (item->d_type != DT_REG && item->d_type != DT_UNKNOWN) continue;
        uint64_t served = 0;
        // W= is the served size: a listing of our own files is readdir only.
        if (auto virtual_size = virtual_size_from_name(file)) {
            served = *virtual_size;
        } else if (auto measured = measure(dirfd(directory.get()), item->d_name, path, buffer)) {
            served = *measured;
        } else {
            continue;
        }
        if (arena_.size() + kMaxName + 32 > std::numeric_limits<uint32_t>::max())
            return make_error(fmt::format("{}: too many messages", maildir_));
        Entry entry{};
        entry.size = served;
        entry.name_offset = static_cast<uint32_t>(arena_.size());
        entry.name_length = static_cast<uint8_t>(file.size());
        std::string_view base = base_of(file);
        entry.base_length = static_cast<uint8_t>(base.size());
        entry.flags = static_cast<uint8_t>((in_cur ? kInCur : 0) | (seen_in_name(file) ? kSeen : 0));
        arena_.append(file);
        // RFC 1939 §7: a UIDL is 1..70 printable characters; other bases
        // are named by their MD5, just as stable.
        if (!valid_uid(base)) {
            entry.flags |= kHashedUid;
            arena_.append(md5_hex(base));
        }
        entries_.push_back(entry);
    }
    return {};
}

Status MaildirInbox::scan() {
    std::vector<char> buffer;
    // new/ before cur/: a message moved from new/ to cur/ during the scan is
    // then seen twice (and kept once below), never missed.
    if (Status scanned = scan_directory(false, buffer); !scanned) return scanned;
    if (Status scanned = scan_directory(true, buffer); !scanned) return scanned;

    auto base_at = [&](const Entry& entry) {
        return std::string_view(arena_).substr(entry.name_offset, entry.base_length);
    };
    // Oldest first; equal times by base name, so the order is the same in
    // every session whatever order readdir gives; a base seen twice keeps
    // its cur/ name first. Sorted in place, the times parsed again at each
    // comparison: no second array per message, even for a moment.
    std::sort(entries_.begin(), entries_.end(), [&](const Entry& a, const Entry& b) {
        Age age_a = age_of(base_at(a)), age_b = age_of(base_at(b));
        if (age_a.seconds != age_b.seconds) return age_a.seconds < age_b.seconds;
        if (age_a.microseconds != age_b.microseconds) return age_a.microseconds < age_b.microseconds;
        if (int order = base_at(a).compare(base_at(b)); order != 0) return order < 0;
        bool a_cur = a.flags & kInCur, b_cur = b.flags & kInCur;
        if (a_cur != b_cur) return a_cur;
        return name(a) < name(b);
    });
    // One base, one message: a unique id must not be listed twice.
    entries_.erase(std::unique(entries_.begin(), entries_.end(),
                               [&](const Entry& a, const Entry& b) { return base_at(a) == base_at(b); }),
                   entries_.end());
    entries_.shrink_to_fit();
    arena_.shrink_to_fit();
    return {};
}

Result<std::map<size_t, std::string>> MaildirInbox::locate(const std::vector<size_t>& indexes) const {
    std::unordered_map<std::string_view, size_t> wanted;
    for (size_t index : indexes) wanted.emplace(base(index), index);
    std::map<size_t, std::string> found;
    for (const char* sub : {"new", "cur"}) {
        std::string path = fmt::format("{}/{}", maildir_, sub);
        Directory directory(opendir(path.c_str()));
        if (!directory) {
            if (errno == ENOENT) continue;
            return make_error(fmt::format("cannot open {}: {}", path, system::errno_text(errno)));
        }
        for (;;) {
            errno = 0;
            dirent* item = readdir(directory.get());
            if (item == nullptr) {
                if (errno != 0) return make_error(fmt::format("cannot read {}: {}", path, system::errno_text(errno)));
                break;
            }
            std::string_view file = item->d_name;
            if (file.empty() || file[0] == '.') continue;
            if (auto match = wanted.find(base_of(file)); match != wanted.end())
                found[match->second] = fmt::format("{}/{}", sub, file);  // cur/ read last: it wins
        }
    }
    return found;
}

Result<std::unique_ptr<MessageReader>> MaildirInbox::open_message(size_t index) {
    if (index >= entries_.size()) return make_error(fmt::format("no message {} in {}", index + 1, maildir_));
    std::string relative = relative_path(index);
    std::string path = fmt::format("{}/{}", maildir_, relative);
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    int open_error = fd ? 0 : errno;
    for (int attempt = 0; open_error == ENOENT && attempt < kRescans; ++attempt) {
        // Renamed by another program (new flags) or expunged: find it again.
        auto found = locate({index});
        if (!found) return make_error(found.error());
        auto where = found->find(index);
        if (where == found->end()) break;
        moved_[index] = where->second;
        path = fmt::format("{}/{}", maildir_, where->second);
        fd.reset(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        open_error = fd ? 0 : errno;
    }
    if (open_error == ENOENT)
        return make_error(fmt::format("message {} ({}) was removed by another program", index + 1, uid(index)));
    if (open_error != 0) return make_error(fmt::format("cannot open {}: {}", path, system::errno_text(open_error)));
    return std::unique_ptr<MessageReader>(std::make_unique<FileReader>(std::move(fd), std::move(path)));
}

Result<CommitReport> MaildirInbox::commit(const std::vector<size_t>& to_delete, const std::vector<size_t>& to_mark_seen) {
    enum Action : uint8_t { none, mark_seen, remove };
    std::map<size_t, Action> actions;
    for (size_t index : to_mark_seen) {
        if (index >= entries_.size()) return make_error(fmt::format("commit: no message {}", index + 1));
        actions[index] = mark_seen;
    }
    // Delete wins over \Seen for the same message.
    for (size_t index : to_delete) {
        if (index >= entries_.size()) return make_error(fmt::format("commit: no message {}", index + 1));
        actions[index] = remove;
    }

    CommitReport report;
    bool touched_new = false, touched_cur = false;
    std::string first_error;
    auto note_error = [&](std::string message) {
        log::warning("maildir={} commit: {}", log::printable(maildir_), message);
        if (first_error.empty()) first_error = std::move(message);
    };
    // One attempt at a message's change at its current known name: false
    // when that name is gone (ENOENT), to be looked for again.
    auto apply = [&](size_t index, Action action) -> bool {
        std::string relative = relative_path(index);
        std::string path = fmt::format("{}/{}", maildir_, relative);
        bool in_new = relative.compare(0, 4, "new/") == 0;
        if (action == remove) {
            if (unlink(path.c_str()) != 0) {
                if (errno == ENOENT) return false;
                note_error(fmt::format("cannot remove {}: {}", path, system::errno_text(errno)));
                return true;
            }
            ++report.deleted;
            (in_new ? touched_new : touched_cur) = true;
            return true;
        }
        std::string_view file = std::string_view(relative).substr(4);
        auto target = seen_name(file);
        if (!target || (!in_new && *target == file)) return true;  // already \Seen, or flags not ours
        std::string target_relative = "cur/" + *target;
        std::string target_path = fmt::format("{}/{}", maildir_, target_relative);
        if (rename(path.c_str(), target_path.c_str()) != 0) {
            if (errno == ENOENT) return false;
            note_error(fmt::format("cannot rename {}: {}", path, system::errno_text(errno)));
            return true;
        }
        ++report.marked_seen;
        touched_cur = true;
        if (in_new) touched_new = true;
        moved_[index] = std::move(target_relative);
        return true;
    };

    std::vector<size_t> missing;
    for (const auto& [index, action] : actions)
        if (!apply(index, action)) missing.push_back(index);
    for (int attempt = 0; attempt < kRescans && !missing.empty(); ++attempt) {
        auto found = locate(missing);
        if (!found) {
            note_error(found.error());
            break;
        }
        std::vector<size_t> still_missing;
        for (size_t index : missing) {
            auto where = found->find(index);
            if (where == found->end()) {
                // Gone for good: removed by another program.
                if (actions[index] == remove) ++report.already_gone;
                continue;
            }
            moved_[index] = where->second;
            if (!apply(index, actions[index])) still_missing.push_back(index);
        }
        missing = std::move(still_missing);
    }
    for (size_t index : missing)
        if (actions[index] == remove) ++report.already_gone;

    // The renames and unlinks are durable only once their folders are.
    if (touched_new)
        if (Status synced = system::fsync_directory(maildir_ + "/new"); !synced) note_error(synced.error());
    if (touched_cur)
        if (Status synced = system::fsync_directory(maildir_ + "/cur"); !synced) note_error(synced.error());
    if (!first_error.empty())
        return make_error(fmt::format("{} (deleted {}, marked seen {})", first_error, report.deleted, report.marked_seen));
    return report;
}

}  // namespace

Result<std::unique_ptr<Mailbox>> open_maildir_inbox(const std::string& maildir) {
    auto inbox = std::make_unique<MaildirInbox>(maildir);
    if (Status scanned = inbox->scan(); !scanned) return make_error(scanned.error());
    return std::unique_ptr<Mailbox>(std::move(inbox));
}

}  // namespace facteur::store::detail
