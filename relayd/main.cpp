// relayd: facteur's sending MTA. Wiring only: config, TLS client contexts,
// the DNS resolver, the scheduler, and the "relay" socket master hands over
// (qmgr connects to it). Relay host credentials arrive on standard input:
// master opened the file as root.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "libmail/daemon.hpp"
#include "libmail/dns.hpp"
#include "libmail/event.hpp"
#include "libmail/ipc.hpp"
#include "libmail/log.hpp"
#include "libmail/system.hpp"
#include "libmail/tls.hpp"
#include "relayd/scheduler.hpp"
#include "relayd/service.hpp"
#include "relayd/settings.hpp"

using namespace facteur;

namespace {

[[noreturn]] void fail(const std::string& message) {
    log::error("{}", message);
    std::exit(1);
}

// Whether the credentials file named in the configuration is no longer the
// one on standard input (path set, unset, or the file replaced).
bool credentials_replaced(const std::string& path) {
    struct stat open_file {};
    bool have_open = fstat(STDIN_FILENO, &open_file) == 0 && S_ISREG(open_file.st_mode);
    if (path.empty()) return have_open;
    struct stat named {};
    if (stat(path.c_str(), &named) != 0) return have_open;
    return !have_open || named.st_ino != open_file.st_ino || named.st_dev != open_file.st_dev;
}

struct TlsContexts {
    tls::Context opportunistic;
    tls::Context verified;
};

Result<TlsContexts> make_contexts(const config::Config& config) {
    auto opportunistic = tls::Context::client({false, ""});
    if (!opportunistic) return make_error(opportunistic.error());
    auto verified = tls::Context::client({true, config.path("relayd", "tls_ca_file")});
    if (!verified) return make_error("tls_ca_file: " + verified.error());
    return TlsContexts{std::move(opportunistic).value(), std::move(verified).value()};
}

Result<relayd::Settings> load(const config::Config& config, const std::string& credentials, TlsContexts& contexts) {
    auto settings = relayd::load_settings(config, credentials);
    if (!settings) return make_error(settings.error());
    settings->client.tls_opportunistic = contexts.opportunistic.get();
    settings->client.tls_verified = contexts.verified.get();
    return settings;
}

}  // namespace

int main(int argc, char** argv) {
    daemon::Startup startup = daemon::start("relayd", argc, argv);
    signal(SIGPIPE, SIG_IGN);
    config::Config config = startup.config;

    auto socket = startup.sockets.take("relay");
    if (!socket) fail(socket.error());

    std::string credentials = relayd::read_credentials_from_stdin();
    auto contexts = make_contexts(config);
    if (!contexts) fail(contexts.error());
    // Contexts replaced on reload stay alive: connections made with them may
    // still be running.
    std::vector<std::unique_ptr<TlsContexts>> retired;
    auto current = std::make_unique<TlsContexts>(std::move(contexts).value());
    auto settings = load(config, credentials, *current);
    if (!settings) fail(settings.error());

    facteur::event::Loop loop;
    auto resolver = dns::Resolver::create(loop, settings->dns);
    if (!resolver) fail("dns_resolvers: " + resolver.error());
    std::unique_ptr<dns::Resolver> dns_resolver = std::move(resolver).value();
    relayd::Scheduler scheduler(loop, *dns_resolver, *settings);
    relayd::Service service(scheduler);
    std::set<uid_t> allowed = daemon::qmgr_peers(config);

    auto server = std::make_unique<ipc::Server>(
        loop, std::move(socket).value(),
        [&service](const ipc::Frame& request, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
            service.handle(request, std::move(respond));
        },
        [&allowed](const ipc::PeerCredentials& peer) {
            if (allowed.count(peer.uid) != 0) return true;
            log::warning("refused connection from uid {} pid {}", peer.uid, peer.pid);
            return false;
        });

    facteur::event::Signal on_term(loop, SIGTERM, [&loop] { loop.stop(); });
    facteur::event::Signal on_int(loop, SIGINT, [&loop] { loop.stop(); });
    facteur::event::Signal on_hup(loop, SIGHUP, [&] {
        if (!daemon::reload(config)) return;
        // Credentials: re-read from the file master opened. When the admin
        // replaced it (a new inode, or another path), only master can open
        // the new one: exit, and master starts relayd again at once with it.
        // Whatever is in flight gets no answer and qmgr retries it.
        if (credentials_replaced(config.path("relayd", "relayhost_credentials"))) {
            log::info("relayhost_credentials changed: restarting so that master opens the new file");
            loop.stop();
            return;
        }
        std::string fresh = relayd::read_credentials_from_stdin();
        auto next_contexts = make_contexts(config);
        if (!next_contexts) {
            log::error("reload: {}; keeping the previous settings", next_contexts.error());
            return;
        }
        auto next = std::make_unique<TlsContexts>(std::move(next_contexts).value());
        auto next_settings = load(config, fresh, *next);
        if (!next_settings) {
            log::error("reload: {}; keeping the previous settings", next_settings.error());
            return;
        }
        retired.push_back(std::move(current));
        current = std::move(next);
        scheduler.set_settings(*next_settings);
        allowed = daemon::qmgr_peers(config);
        log::info("configuration reloaded from {}", config.file());
    });

    log::info("ready pid={} tls_security_level={} relay host credentials={} dns={}", getpid(),
              relayd::tls_level_name(settings->default_tls), settings->credentials.size(),
              settings->dns.servers.empty() ? std::string("system") : fmt::format("{}", fmt::join(settings->dns.servers, ",")));
    loop.run();
    log::info("stopping");
    server.reset();
    scheduler.shutdown();
    return 0;
}
