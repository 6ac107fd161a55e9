// qmgr: the queue manager. Wiring only: config, the spool, clients for authd,
// deliverd and relayd, the transport table, the worker pool, and the
// control socket master hands over.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <set>

#include "libmail/auth_lookup.hpp"
#include "libmail/daemon.hpp"
#include "libmail/event.hpp"
#include "libmail/ipc.hpp"
#include "libmail/log.hpp"
#include "libmail/queue.hpp"
#include "libmail/system.hpp"
#include "libmail/relay_protocol.hpp"
#include "qmgr/queue_manager.hpp"
#include "qmgr/relay_pool.hpp"
#include "qmgr/transport_table.hpp"

using namespace facteur;

namespace {

[[noreturn]] void fail(const std::string& message) {
    log::error("{}", message);
    std::exit(1);
}

qmgr::Settings settings_from(const config::Config& config) {
    qmgr::Settings settings;
    auto hostname = daemon::host_name(config);
    if (!hostname) fail(hostname.error());
    settings.hostname = *hostname;
    settings.scan_interval = config.duration("qmgr", "scan_interval");
    auto seconds = [&](std::string_view name) {
        return static_cast<int64_t>(config.duration("qmgr", name).count() / 1000);
    };
    settings.minimal_backoff = std::max<int64_t>(1, seconds("minimal_backoff_time"));
    settings.maximal_backoff = std::max<int64_t>(1, seconds("maximal_backoff_time"));
    settings.queue_lifetime = seconds("maximal_queue_lifetime");
    settings.bounce_lifetime = seconds("bounce_queue_lifetime");
    settings.concurrency = static_cast<size_t>(config.integer("qmgr", "delivery_concurrency"));
    settings.active_limit = static_cast<size_t>(config.integer("qmgr", "active_limit"));
    settings.message_size_limit = config.size("", "message_size_limit");
    settings.relay_concurrency = static_cast<size_t>(config.integer("qmgr", "relay_concurrency"));
    settings.delay_warning = seconds("delay_warning_time");
    if (std::string relayhost = config.string("relayhost"); !relayhost.empty()) {
        auto hop = relay::parse_nexthop(relayhost);
        if (!hop) fail("bad relayhost: " + hop.error());
        settings.relayhost = std::move(*hop);
    }
    return settings;
}

// transport_maps: null when unset. At start a bad table stops qmgr; on
// SIGHUP the caller keeps the old one.
Result<std::shared_ptr<const qmgr::TransportTable>> load_transports(const config::Config& config) {
    std::string path = config.path("transport_maps");
    if (path.empty()) return std::shared_ptr<const qmgr::TransportTable>();
    auto table = qmgr::TransportTable::load(path);
    if (!table) return make_error("bad transport_maps: " + table.error());
    log::info("transport table {}: {} entr{}", path, table->size(), table->size() == 1 ? "y" : "ies");
    return std::shared_ptr<const qmgr::TransportTable>(std::make_shared<qmgr::TransportTable>(std::move(*table)));
}

}  // namespace

int main(int argc, char** argv) {
    daemon::Startup startup = daemon::start("qmgr", argc, argv);
    signal(SIGPIPE, SIG_IGN);
    config::Config& config = startup.config;

    auto control_socket = startup.sockets.take("qmgr");
    if (!control_socket) fail(control_socket.error());

    facteur::event::Loop loop;
    // Disk work (fsync of status logs, reports, listings) off the loop.
    facteur::event::WorkerPool pool(loop, 2);
    auth_lookup::Client authd(loop, config.path("auth_lookup_socket"), std::chrono::seconds(30));
    // A delivery may run a pipe command for pipe_timeout, or fsync a large
    // message; past that (plus a minute) the call fails and the message is
    // deferred, so a deliverd that never answers cannot hold mail for long.
    ipc::AsyncClient deliverd(loop, config.path("deliverd_socket"),
                              config.duration("deliverd", "pipe_timeout") + std::chrono::minutes(1));

    qmgr::Settings settings = settings_from(config);
    auto transports = load_transports(config);
    if (!transports) fail(transports.error());
    // One connection per relayd request in flight: a request lasts as long
    // as the remote servers take (RFC 5321 §4.5.3.2 timeouts add up to
    // tens of minutes), so the ipc timeout is generous.
    qmgr::RelayPool relayd(loop, config.path("relayd_socket"), settings.relay_concurrency, std::chrono::hours(1));

    qmgr::QueueManager manager(loop, queue::Spool(config.path("spool_dir")), settings, authd, deliverd, relayd, pool);
    manager.set_transports(std::move(*transports));
    if (Status s = manager.recover(); !s) fail("cannot recover the queue: " + s.error());

    // Changing the queue is for root and the mail owner (which qmgr runs
    // as); looking at it is for everyone, like Postfix's mailq.
    std::set<uid_t> privileged{0, geteuid()};
    if (auto owner = system::find_account(config.string("mail_owner"))) privileged.insert(owner->uid);
    ipc::Server control(loop, std::move(control_socket).value(),
                        [&](const ipc::Frame& request, const ipc::PeerCredentials& peer, ipc::Server::Responder respond) {
                            manager.handle_control(request, privileged.count(peer.uid) > 0,
                                                   [respond](ipc::Frame reply) { respond(reply); });
                        });

    bool stopping = false;
    auto stop = [&] {
        if (stopping) return;
        stopping = true;
        log::info("qmgr stopping; waiting for {} message(s) in delivery", manager.in_flight());
        manager.stop([&loop] { loop.stop(); });
    };
    facteur::event::Signal on_term(loop, SIGTERM, stop);
    facteur::event::Signal on_int(loop, SIGINT, stop);
    facteur::event::Signal on_hup(loop, SIGHUP, [&] {
        // The transport table is re-read (a bad one is refused, the old one
        // stays); other settings take effect at the next restart.
        if (daemon::reload(config)) {
            if (auto reloaded = load_transports(config); !reloaded) {
                log::error("reload: {}; keeping the previous transport table", reloaded.error());
            } else {
                manager.set_transports(std::move(*reloaded));
                log::info("reload done: transport table re-read; other qmgr settings take effect at the next restart");
            }
        }
        manager.wakeup();
    });

    manager.start();
    log::info("qmgr started; spool {}", config.path("spool_dir"));
    loop.run();
    log::info("qmgr stopped");
    return 0;
}
