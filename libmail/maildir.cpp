// Maildir delivery and bookkeeping: unique names, tmp -> new, quota usage.
#include "libmail/maildir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "libmail/system.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::store {
namespace {

constexpr size_t kMaxFolderName = 255;
// A name clash in tmp/ or new/ (another host on shared storage, a clock
// step) is retried with a fresh name a few times, then reported.
constexpr int kNameAttempts = 8;

std::atomic<uint64_t> name_counter{0};

struct DirectoryCloser {
    void operator()(DIR* directory) const { closedir(directory); }
};
using Directory = std::unique_ptr<DIR, DirectoryCloser>;

bool is_directory(const std::string& path) {
    struct stat info {};
    return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

// The decimal number following `key` ("S=") in a name's comma-separated
// fields, before the ":2," info part.
std::optional<uint64_t> field_from_name(std::string_view name, std::string_view key) {
    size_t colon = name.find(':');
    if (colon != std::string_view::npos) name = name.substr(0, colon);
    size_t position = name.find(',');
    while (position != std::string_view::npos) {
        size_t next = name.find(',', position + 1);
        std::string_view field = name.substr(position + 1, next == std::string_view::npos ? next : next - position - 1);
        if (field.size() > key.size() && field.substr(0, key.size()) == key) {
            std::string_view digits = field.substr(key.size());
            if (digits.size() > 19) return std::nullopt;
            uint64_t value = 0;
            for (char c : digits) {
                if (c < '0' || c > '9') return std::nullopt;
                value = value * 10 + static_cast<uint64_t>(c - '0');
            }
            return value;
        }
        position = next;
    }
    return std::nullopt;
}

// Sum of the sizes of the files in one directory (new/ or cur/).
Result<uint64_t> directory_usage(const std::string& path) {
    Directory directory(opendir(path.c_str()));
    if (!directory) {
        if (errno == ENOENT) return uint64_t{0};
        return make_error(fmt::format("cannot open {}: {}", path, system::errno_text(errno)));
    }
    uint64_t total = 0;
    while (dirent* entry = readdir(directory.get())) {
        std::string_view name = entry->d_name;
        if (name.empty() || name[0] == '.') continue;
        if (auto size = size_from_name(name)) {
            total += *size;
            continue;
        }
        struct stat info {};
        // The file may have been expunged or moved since readdir: not an error.
        if (fstatat(dirfd(directory.get()), entry->d_name, &info, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (S_ISREG(info.st_mode)) total += static_cast<uint64_t>(info.st_size);
    }
    return total;
}

Result<uint64_t> folder_usage(const std::string& folder) {
    uint64_t total = 0;
    for (const char* sub : {"/new", "/cur"}) {
        auto used = directory_usage(folder + sub);
        if (!used) return used;
        total += *used;
    }
    return total;
}


}  // namespace

std::string maildir_path(std::string_view mail_path) {
    std::string path(mail_path);
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    return path + "/Maildir";
}

bool valid_folder_name(std::string_view folder) {
    if (folder.empty()) return true;
    if (folder.size() > kMaxFolderName) return false;
    if (folder.front() == '.' || folder.back() == '.') return false;
    if (folder.find("..") != std::string_view::npos) return false;
    for (char c : folder) {
        unsigned char byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f || c == '/') return false;
    }
    return true;
}

std::string folder_path(std::string_view maildir, std::string_view folder) {
    if (!valid_folder_name(folder)) panic(fmt::format("folder_path: invalid folder name {}", folder));
    if (folder.empty()) return std::string(maildir);
    return fmt::format("{}/.{}", maildir, folder);
}

bool folder_exists(std::string_view maildir, std::string_view folder) {
    if (folder.empty()) return true;
    if (!valid_folder_name(folder)) return false;
    return is_directory(folder_path(maildir, folder) + "/cur");
}

Status create_maildir(const std::string& directory) {
    if (Status made = make_directories(directory, 0700); !made) return made;
    for (const char* sub : {"/tmp", "/new", "/cur"}) {
        std::string path = directory + sub;
        if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
            return make_error(fmt::format("cannot create {}: {}", path, system::errno_text(errno)));
    }
    return {};
}

std::string escape_hostname(std::string_view host) {
    std::string out;
    out.reserve(host.size());
    for (char c : host) {
        if (c == '/')
            out += "\\057";
        else if (c == ':')
            out += "\\072";
        else
            out += c;
    }
    return out;
}

std::string format_unique_name(const UniqueNameParts& parts) {
    return fmt::format("{}.M{}P{}Q{}.{}", parts.seconds, parts.microseconds, parts.pid, parts.counter,
                       escape_hostname(parts.host));
}

std::string new_unique_name(std::string_view host) {
    timeval now{};
    gettimeofday(&now, nullptr);
    UniqueNameParts parts;
    parts.seconds = now.tv_sec;
    parts.microseconds = now.tv_usec;
    parts.pid = getpid();
    parts.counter = ++name_counter;
    parts.host = std::string(host.empty() ? std::string_view("localhost") : host);
    return format_unique_name(parts);
}

std::string delivered_name(std::string_view base, uint64_t size, uint64_t virtual_size) {
    return fmt::format("{},S={},W={}", base, size, virtual_size);
}

std::optional<uint64_t> size_from_name(std::string_view name) { return field_from_name(name, "S="); }
std::optional<uint64_t> virtual_size_from_name(std::string_view name) { return field_from_name(name, "W="); }

Result<uint64_t> maildir_usage(const std::string& maildir) {
    auto total = folder_usage(maildir);
    if (!total) return total;
    Directory directory(opendir(maildir.c_str()));
    if (!directory) {
        if (errno == ENOENT) return uint64_t{0};
        return make_error(fmt::format("cannot open {}: {}", maildir, system::errno_text(errno)));
    }
    while (dirent* entry = readdir(directory.get())) {
        std::string_view name = entry->d_name;
        // Maildir++ folders are the ".name" subdirectories.
        if (name.size() < 2 || name[0] != '.' || name == "..") continue;
        std::string path = fmt::format("{}/{}", maildir, name);
        if (!is_directory(path)) continue;
        auto used = folder_usage(path);
        if (!used) return used;
        *total += *used;
    }
    return total;
}

WriteOutcome deliver_to_maildir(const std::string& directory, std::string_view host, const MessageSource& source) {
    if (Status made = create_maildir(directory); !made) return WriteOutcome::failure(errno, made.error());

    std::string base, tmp_path;
    UniqueFd fd;
    for (int attempt = 0; attempt < kNameAttempts && !fd; ++attempt) {
        base = new_unique_name(host);
        tmp_path = fmt::format("{}/tmp/{}", directory, base);
        fd.reset(open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (!fd && errno != EEXIST)
            return WriteOutcome::failure(errno, fmt::format("cannot create {}: {}", tmp_path, system::errno_text(errno)));
    }
    if (!fd) return WriteOutcome::failure(EEXIST, fmt::format("no unique name free in {}/tmp", directory));

    // From here on, any failure removes the tmp file: a Maildir never keeps
    // half a message (tmp/ is not read by anyone, but it would waste space).
    struct TmpRemover {
        std::string path;
        bool armed = true;
        ~TmpRemover() {
            if (armed) unlink(path.c_str());
        }
    } remover{tmp_path};

    uint64_t size = 0, newlines = 0;
    int write_error = 0;
    Status read = source([&](std::string_view chunk) {
        if (int error = system::write_all(fd.get(), chunk); error != 0) {
            write_error = error;
            return false;
        }
        size += chunk.size();
        for (char c : chunk)
            if (c == '\n') ++newlines;
        return true;
    });
    if (write_error != 0)
        return WriteOutcome::failure(write_error,
                                     fmt::format("cannot write {}: {}", tmp_path, system::errno_text(write_error)));
    if (!read) return WriteOutcome::failure(0, read.error());
    if (fsync(fd.get()) != 0)
        return WriteOutcome::failure(errno, fmt::format("fsync {}: {}", tmp_path, system::errno_text(errno)));
    if (close(fd.release()) != 0)
        return WriteOutcome::failure(errno, fmt::format("close {}: {}", tmp_path, system::errno_text(errno)));

    // link(2) refuses to replace an existing name, unlike rename(2): a clash
    // gets a new name instead of overwriting someone's mail.
    std::string new_path;
    bool linked = false;
    for (int attempt = 0; attempt < kNameAttempts && !linked; ++attempt) {
        std::string name = delivered_name(attempt == 0 ? base : new_unique_name(host), size, size + newlines);
        new_path = fmt::format("{}/new/{}", directory, name);
        if (link(tmp_path.c_str(), new_path.c_str()) == 0) {
            linked = true;
        } else if (errno == EPERM || errno == EOPNOTSUPP || errno == ENOSYS) {
            // File systems without hard links: rename that refuses to replace.
            if (renameat2(AT_FDCWD, tmp_path.c_str(), AT_FDCWD, new_path.c_str(), RENAME_NOREPLACE) == 0) {
                linked = true;
                remover.armed = false;
            } else if (errno != EEXIST) {
                return WriteOutcome::failure(
                    errno, fmt::format("cannot move {} into new/: {}", tmp_path, system::errno_text(errno)));
            }
        } else if (errno != EEXIST) {
            return WriteOutcome::failure(errno,
                                         fmt::format("cannot link {} into new/: {}", tmp_path, system::errno_text(errno)));
        }
    }
    if (!linked) return WriteOutcome::failure(EEXIST, fmt::format("no unique name free in {}/new", directory));
    // The tmp name goes (the remover), then new/ is made durable: only now
    // may deliverd report the message delivered (DESIGN §3).
    if (remover.armed) {
        unlink(tmp_path.c_str());
        remover.armed = false;
    }
    if (Status synced = system::fsync_directory(directory + "/new"); !synced) {
        int error = errno;
        unlink(new_path.c_str());
        return WriteOutcome::failure(error, synced.error());
    }
    WriteOutcome outcome;
    outcome.path = new_path;
    outcome.size = size;
    return outcome;
}

}  // namespace facteur::store
