// Instance preparation: directories, owners, the pid-file lock, TLS check.
#include "master/instance.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

#include "libmail/queue.hpp"
#include "libmail/system.hpp"
#include "libmail/tls.hpp"


namespace facteur::master {
namespace {

Result<std::optional<system::Account>> owner(const config::Config& config, std::string_view parameter) {
    if (!system::running_as_root()) return std::optional<system::Account>{};
    auto account = system::find_account(config.string(parameter));
    if (!account) return make_error(fmt::format("{} = {}: {}", parameter, config.string(parameter), account.error()));
    return std::optional<system::Account>{*account};
}

}  // namespace

Status prepare_directories(const config::Config& config) {
    auto mail_owner = owner(config, "mail_owner");
    if (!mail_owner) return make_error(mail_owner.error());
    auto vmail_owner = owner(config, "vmail_owner");
    if (!vmail_owner) return make_error(vmail_owner.error());
    auto auth_owner = owner(config, "auth_owner");
    if (!auth_owner) return make_error(auth_owner.error());

    if (Status s = system::ensure_directory(config.path("runtime_dir"), 0755); !s) return s;
    if (Status s = system::ensure_directory(config.path("data_dir"), 0755); !s) return s;
    if (Status s = system::ensure_directory(config.path("spool_dir"), 0755, *mail_owner); !s) return s;
    if (Status s = system::ensure_directory(config.path("mail_dir"), 0700, *vmail_owner); !s) return s;

    // The queue folders (DESIGN §3), owned by mail_owner. deliverd (vmail)
    // reads queue files in active/ through the mail_owner group, which
    // scripts/create-users gives it.
    queue::Spool spool(config.path("spool_dir"));
    if (Status s = spool.create_folders(); !s) return s;
    if (*mail_owner) {
        std::vector<std::string> folders;
        for (queue::Folder folder : {queue::Folder::tmp, queue::Folder::incoming, queue::Folder::active,
                                     queue::Folder::deferred, queue::Folder::hold, queue::Folder::corrupt,
                                     queue::Folder::maildrop, queue::Folder::log})
            folders.push_back(spool.folder_path(folder));
        for (char c : std::string_view("0123456789ABCDEFGHIJKLMNOPQRSTUV"))
            folders.push_back(spool.folder_path(queue::Folder::deferred) + "/" + c);
        for (const std::string& folder : folders) {
            struct stat info {};
            if (lstat(folder.c_str(), &info) != 0 || !S_ISDIR(info.st_mode))
                return make_error(fmt::format("{} is not a directory", folder));
            if ((info.st_uid != (*mail_owner)->uid || info.st_gid != (*mail_owner)->gid) &&
                chown(folder.c_str(), (*mail_owner)->uid, (*mail_owner)->gid) != 0)
                return make_error(fmt::format("cannot chown {}: {}", folder, system::errno_text(errno)));
        }
    }

    // The user database: readable by authd alone (DESIGN §1).
    std::string database = config.path("auth_db");
    if (Status s = system::ensure_directory(system::parent_directory(database), 0700, *auth_owner); !s) return s;
    for (const char* suffix : {"", "-wal", "-shm"}) {
        std::string file = database + suffix;
        struct stat info {};
        if (lstat(file.c_str(), &info) != 0) continue;
        if (!S_ISREG(info.st_mode)) return make_error(fmt::format("{} is not a regular file", file));
        if (*auth_owner && (info.st_uid != (*auth_owner)->uid || info.st_gid != (*auth_owner)->gid) &&
            chown(file.c_str(), (*auth_owner)->uid, (*auth_owner)->gid) != 0)
            return make_error(fmt::format("cannot chown {}: {}", file, system::errno_text(errno)));
        if ((info.st_mode & 0077) != 0 && chmod(file.c_str(), 0600) != 0)
            return make_error(fmt::format("cannot chmod {}: {}", file, system::errno_text(errno)));
    }
    return {};
}

Result<UniqueFd> lock_pid_file(const config::Config& config) {
    std::string path = config.path("runtime_dir") + "/master.pid";
    UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd) return make_error(fmt::format("cannot open {}: {}", path, system::errno_text(errno)));
    if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        char buffer[32] = {};
        ssize_t n = pread(fd.get(), buffer, sizeof buffer - 1, 0);
        std::string pid = n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "?";
        while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
        return make_error(fmt::format("master is already running for this instance (pid {}, {})", pid, path));
    }
    std::string pid = fmt::format("{}\n", getpid());
    if (ftruncate(fd.get(), 0) != 0 || pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
        return make_error(fmt::format("cannot write {}: {}", path, system::errno_text(errno)));
    return fd;
}

Status check_tls(const config::Config& config) {
    std::string cert = config.path("tls_cert_file");
    std::string key = config.path("tls_key_file");
    if (cert.empty() && key.empty()) return {};
    if (cert.empty() || key.empty()) return make_error("tls_cert_file and tls_key_file must be set together");
    auto context = tls::Context::server(cert, key);
    if (!context) return make_error(context.error());
    return {};
}

}  // namespace facteur::master
