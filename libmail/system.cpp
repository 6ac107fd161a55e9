// Accounts, privilege dropping and durable file-system operations.
#include "libmail/system.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "libmail/unique_fd.hpp"

namespace facteur::system {

std::string errno_text(int error) { return std::strerror(error); }

Result<std::string> read_all(int fd, size_t limit, std::string_view name) {
    std::string text;
    char buffer[16384];
    for (;;) {
        ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) continue;
            return make_error(fmt::format("cannot read {}: {}", name, errno_text(errno)));
        }
        if (n == 0) return text;
        text.append(buffer, static_cast<size_t>(n));
        if (text.size() > limit) return make_error(fmt::format("{}: larger than {} bytes", name, limit));
    }
}

Result<std::string> read_file(const std::string& path, size_t limit) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return make_error(fmt::format("cannot read {}: {}", path, errno_text(errno)));
    return read_all(fd.get(), limit, path);
}

Result<Account> find_account(std::string_view name) {
    std::string key(name);
    std::vector<char> buffer(16384);
    passwd entry{};
    passwd* found = nullptr;
    int error = getpwnam_r(key.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (error != 0) return make_error(fmt::format("cannot look up user {}: {}", name, errno_text(error)));
    if (found == nullptr) return make_error(fmt::format("user {} does not exist", name));
    return Account{key, entry.pw_uid, entry.pw_gid};
}

Account current_account() {
    uid_t uid = geteuid();
    std::vector<char> buffer(16384);
    passwd entry{};
    passwd* found = nullptr;
    std::string name = std::to_string(uid);
    if (getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) name = entry.pw_name;
    return Account{name, uid, getegid()};
}

bool running_as_root() { return geteuid() == 0; }

Status drop_privileges(const Account& account) {
    if (!running_as_root()) return {};
    if (initgroups(account.name.c_str(), account.gid) != 0 && setgroups(1, &account.gid) != 0)
        return make_error(fmt::format("setgroups for {}: {}", account.name, errno_text(errno)));
    if (setresgid(account.gid, account.gid, account.gid) != 0)
        return make_error(fmt::format("setgid {}: {}", account.gid, errno_text(errno)));
    if (setresuid(account.uid, account.uid, account.uid) != 0)
        return make_error(fmt::format("setuid {}: {}", account.uid, errno_text(errno)));
    if (account.uid != 0 && setuid(0) == 0) return make_error("could regain root after dropping privileges");
    return {};
}

std::string parent_directory(std::string_view path) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string_view::npos) return ".";
    if (slash == 0) return "/";
    return std::string(path.substr(0, slash));
}

namespace {

// Directories an admin could name by mistake (data_dir = /var): never
// re-owned or re-moded, whatever the configuration says.
bool is_system_directory(std::string_view path) {
    while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
    for (std::string_view system : {"/", "/etc", "/var", "/var/lib", "/var/spool", "/var/mail", "/run", "/tmp",
                                    "/var/tmp", "/usr", "/usr/lib", "/usr/local", "/usr/local/lib", "/home", "/root",
                                    "/proc", "/sys", "/dev", "/srv", "/opt", "/boot", "/bin", "/sbin", "/lib"}) {
        if (path == system) return true;
    }
    return false;
}

}  // namespace

Status ensure_directory(const std::string& path, mode_t mode, std::optional<Account> owner) {
    if (path.empty()) return make_error("empty directory path");
    if (is_system_directory(path))
        return make_error(fmt::format("{} is a system directory; facteur needs a directory of its own there", path));
    // Create the parents with ordinary permissions first.
    for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
        std::string parent = path.substr(0, slash);
        if (mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST)
            return make_error(fmt::format("cannot create {}: {}", parent, errno_text(errno)));
    }
    if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
        return make_error(fmt::format("cannot create {}: {}", path, errno_text(errno)));
    struct stat info {};
    if (stat(path.c_str(), &info) != 0) return make_error(fmt::format("cannot stat {}: {}", path, errno_text(errno)));
    if (!S_ISDIR(info.st_mode)) return make_error(fmt::format("{} exists and is not a directory", path));
    if (owner && running_as_root() && (info.st_uid != owner->uid || info.st_gid != owner->gid)) {
        if (chown(path.c_str(), owner->uid, owner->gid) != 0)
            return make_error(fmt::format("cannot chown {} to {}: {}", path, owner->name, errno_text(errno)));
    }
    if ((info.st_mode & 07777) != mode && chmod(path.c_str(), mode) != 0)
        return make_error(fmt::format("cannot chmod {}: {}", path, errno_text(errno)));
    return {};
}

Status fsync_directory(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return make_error(fmt::format("cannot open {}: {}", path, errno_text(errno)));
    int result = fsync(fd);
    int saved = errno;
    close(fd);
    if (result != 0) return make_error(fmt::format("fsync {}: {}", path, errno_text(saved)));
    return {};
}

int write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        data.remove_prefix(static_cast<size_t>(n));
    }
    return 0;
}

Status write_file_atomically(const std::string& path, std::string_view content, mode_t mode) {
    std::string temporary = fmt::format("{}.tmp.{}", path, getpid());
    int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) return make_error(fmt::format("cannot create {}: {}", temporary, errno_text(errno)));
    size_t written = 0;
    while (written < content.size()) {
        ssize_t n = write(fd, content.data() + written, content.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int saved = errno;
            close(fd);
            unlink(temporary.c_str());
            return make_error(fmt::format("cannot write {}: {}", temporary, errno_text(saved)));
        }
        written += static_cast<size_t>(n);
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(temporary.c_str());
        return make_error(fmt::format("cannot sync {}: {}", temporary, errno_text(errno)));
    }
    if (rename(temporary.c_str(), path.c_str()) != 0) {
        int saved = errno;
        unlink(temporary.c_str());
        return make_error(fmt::format("cannot rename to {}: {}", path, errno_text(saved)));
    }
    return fsync_directory(parent_directory(path));
}

}  // namespace facteur::system
