// Daemon start-up shared by every facteur daemon.
#include "libmail/daemon.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "libmail/address.hpp"
#include "libmail/log.hpp"
#include "libmail/system.hpp"
#include "libmail/paths.hpp"

namespace facteur::daemon {
namespace {

[[noreturn]] void fail(std::string_view ident, std::string_view message) {
    log::error("{}", message);
    // Also on stderr when logging goes to syslog, so a foreground admin sees it.
    std::fprintf(stderr, "%.*s: %.*s\n", static_cast<int>(ident.size()), ident.data(),
                 static_cast<int>(message.size()), message.data());
    std::exit(1);
}

}  // namespace

Result<InheritedSockets> InheritedSockets::take_from_environment() {
    InheritedSockets result;
    const char* count_text = std::getenv(kListenFdsVariable);
    if (count_text == nullptr) return result;
    std::string names_text = std::getenv(kListenNamesVariable) ? std::getenv(kListenNamesVariable) : "";
    int count = 0;
    std::string_view view(count_text);
    auto [end, error] = std::from_chars(view.data(), view.data() + view.size(), count);
    if (error != std::errc() || end != view.data() + view.size() || count < 0 || count > 256)
        return make_error(fmt::format("{}={} is not a descriptor count", kListenFdsVariable, view));
    std::vector<std::string> names = config::split_list(names_text);
    if (static_cast<int>(names.size()) != count)
        return make_error(fmt::format("{} names {} sockets but {} says {}", kListenNamesVariable, names.size(),
                                      kListenFdsVariable, count));
    for (int i = 0; i < count; ++i) {
        int fd = kFirstInheritedFd + i;
        struct stat info {};
        if (fstat(fd, &info) != 0 || !S_ISSOCK(info.st_mode))
            return make_error(fmt::format("inherited descriptor {} ({}) is not a socket", fd, names[i]));
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        result.sockets_[names[i]] = UniqueFd(fd);
    }
    unsetenv(kListenFdsVariable);
    unsetenv(kListenNamesVariable);
    return result;
}

Result<UniqueFd> InheritedSockets::take(std::string_view name) {
    auto found = sockets_.find(name);
    if (found == sockets_.end() || !found->second.valid())
        return make_error(fmt::format("no listening socket '{}' was handed over (start daemons through master)", name));
    return std::move(found->second);
}

std::vector<std::string> InheritedSockets::names() const {
    std::vector<std::string> out;
    for (const auto& [name, fd] : sockets_) out.push_back(name);
    return out;
}

void init_logging(std::string_view ident, const config::Config& config) {
    log::Target target = log::Target::syslog;
    log::Level level = log::Level::info;
    std::string target_name = config.string("log_target");
    std::string level_name = config.string("log_level");
    if (!log::parse_target(target_name, target)) {
        log::init(ident, log::Target::stderr_stream);
        fail(ident, fmt::format("log_target = {}: use syslog or stderr", target_name));
    }
    if (!log::parse_level(level_name, level)) {
        log::init(ident, log::Target::stderr_stream);
        fail(ident, fmt::format("log_level = {}: use debug, info, notice, warning or error", level_name));
    }
    log::init(ident, target, level);
}

Startup start(std::string_view ident, int argc, char** argv) {
    log::init(ident, log::Target::stderr_stream);
    std::string path;
    if (const char* from_environment = std::getenv(kConfigVariable)) path = from_environment;
    for (int i = 1; i < argc; ++i) {
        std::string_view argument(argv[i]);
        if ((argument == "-c" || argument == "--config") && i + 1 < argc) {
            path = argv[++i];
        } else if (argument == "-h" || argument == "--help") {
            std::printf("usage: %.*s [-c config-file]\n(normally started by master; see %.*s(8))\n",
                        static_cast<int>(ident.size()), ident.data(), static_cast<int>(ident.size()), ident.data());
            std::exit(0);
        } else {
            fail(ident, fmt::format("unknown argument '{}' (usage: {} [-c config-file])", argument, ident));
        }
    }
    if (path.empty()) path = paths::config_file;
    auto loaded = config::Config::load(path);
    if (!loaded) fail(ident, loaded.error());
    Startup startup{std::move(loaded).value(), "", {}};
    init_logging(ident, startup.config);
    if (const char* service = std::getenv(kServiceVariable)) startup.service = service;
    else startup.service = std::string(ident);
    auto sockets = InheritedSockets::take_from_environment();
    if (!sockets) fail(ident, sockets.error());
    startup.sockets = std::move(sockets).value();
    return startup;
}

bool reload(config::Config& config) {
    if (config.file().empty()) {
        log::warning("reload: running on built-in defaults, no file to re-read");
        return false;
    }
    auto fresh = config::Config::load(config.file());
    if (!fresh) {
        log::error("reload refused, keeping the running configuration: {}", fresh.error());
        return false;
    }
    config = std::move(fresh).value();
    return true;
}

Result<std::string> host_name(const config::Config& config) {
    std::string name = config.string("myhostname");
    if (name.empty()) {
        char buffer[256] = {};
        if (gethostname(buffer, sizeof buffer - 1) != 0)
            return make_error(fmt::format("cannot find the host name: {}", strerror(errno)));
        name = buffer;
    }
    if (!address::is_valid_domain(name, false))
        return make_error(fmt::format("host name '{}' is not a valid domain name: set myhostname in facteur.conf",
                                      log::printable(name)));
    return name;
}

std::set<uid_t> qmgr_peers(const config::Config& config) {
    std::set<uid_t> allowed{0, geteuid()};
    auto owner = system::find_account(config.string("mail_owner"));
    if (owner) allowed.insert(owner->uid);
    return allowed;
}

}  // namespace facteur::daemon
