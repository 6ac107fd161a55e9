// deliverd: facteur's MDA. Wiring only: config, worker pool, the request
// handler, and the "deliver" socket master hands over (qmgr connects to it).
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <set>

#include "deliverd/request_handler.hpp"
#include "libmail/daemon.hpp"
#include "libmail/event.hpp"
#include "libmail/ipc.hpp"
#include "libmail/log.hpp"
#include "libmail/system.hpp"

using namespace facteur;

namespace {

[[noreturn]] void fail(const std::string& message) {
    log::error("{}", message);
    std::exit(1);
}

deliverd::AgentSettings agent_settings(const config::Config& config) {
    deliverd::AgentSettings settings;
    auto hostname = daemon::host_name(config);
    if (!hostname) {
        log::error("{}", hostname.error());
        std::exit(1);
    }
    settings.hostname = *hostname;
    settings.pipe_timeout = config.duration("deliverd", "pipe_timeout");
    settings.quota_exceeded_permanent = config.boolean("deliverd", "quota_exceeded_permanent");
    return settings;
}

}  // namespace

int main(int argc, char** argv) {
    daemon::Startup startup = daemon::start("deliverd", argc, argv);
    signal(SIGPIPE, SIG_IGN);
    config::Config config = startup.config;

    auto socket = startup.sockets.take("deliver");
    if (!socket) fail(socket.error());
    if (system::running_as_root())
        log::warning("running as root: pipe deliveries will be deferred until deliverd runs as an unprivileged user");

    facteur::event::Loop loop;
    facteur::event::WorkerPool pool(loop, static_cast<size_t>(config.integer("deliverd", "workers")));
    deliverd::RequestHandler handler(pool, agent_settings(config));
    std::set<uid_t> allowed = daemon::qmgr_peers(config);

    auto server = std::make_unique<ipc::Server>(
        loop, std::move(socket).value(),
        [&handler](const ipc::Frame& request, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
            handler.handle(request, std::move(respond));
        },
        [&allowed](const ipc::PeerCredentials& peer) {
            if (deliverd::peer_allowed(peer, allowed)) return true;
            log::warning("refused connection from uid {} pid {}", peer.uid, peer.pid);
            return false;
        });

    facteur::event::Signal on_term(loop, SIGTERM, [&loop] { loop.stop(); });
    facteur::event::Signal on_int(loop, SIGINT, [&loop] { loop.stop(); });
    facteur::event::Signal on_hup(loop, SIGHUP, [&] {
        if (!daemon::reload(config)) return;
        handler.set_settings(agent_settings(config));
        allowed = daemon::qmgr_peers(config);
        log::info("configuration reloaded from {}", config.file());
    });

    log::info("ready pid={} workers={}", getpid(), config.integer("deliverd", "workers"));
    loop.run();
    // Stop accepting first; then the pool's destructor lets running
    // deliveries finish (queued ones are dropped: qmgr gets no reply and
    // retries them, and a mailbox never holds half a message).
    log::info("stopping");
    server.reset();
    return 0;
}
