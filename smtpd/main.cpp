// smtpd: facteur's SMTP server (ports 25, 587, 465). Wiring only: settings,
// TLS, the sockets master handed over, authd and qmgr clients, the loop.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include "libmail/auth_lookup.hpp"
#include "libmail/daemon.hpp"
#include "libmail/event.hpp"
#include "libmail/log.hpp"
#include "libmail/queue.hpp"
#include "libmail/tls.hpp"
#include "smtpd/qmgr_wakeup.hpp"
#include "smtpd/server.hpp"
#include "smtpd/settings.hpp"

using namespace facteur;

namespace {

bool logging_to_stderr = true;

// CONVENTIONS: a process that cannot go on exits 1 with one clear line,
// also on stderr when the log goes to syslog, for an admin in a terminal.
[[noreturn]] void fail(const std::string& message) {
    log::error("{}", message);
    if (!logging_to_stderr) std::fprintf(stderr, "smtpd: %s\n", message.c_str());
    std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
    daemon::Startup startup = daemon::start("smtpd", argc, argv);
    logging_to_stderr = startup.config.string("log_target") == "stderr";
    std::string service = startup.service.empty() ? "smtpd" : startup.service;
    auto loaded = smtpd::load_settings(startup.config, service);
    if (!loaded) fail(fmt::format("refusing to start: {}", loaded.error()));
    const smtpd::Settings settings = std::move(loaded).value();

    std::optional<tls::Context> tls;
    if (settings.tls_configured()) {
        auto context = tls::Context::server(settings.tls_cert_file, settings.tls_key_file);
        if (!context) fail(fmt::format("refusing to start: TLS: {}", context.error()));
        tls.emplace(std::move(context).value());
    }

    std::vector<std::pair<UniqueFd, smtpd::PortKind>> sockets;
    for (const std::string& name : startup.sockets.names()) {
        auto kind = smtpd::port_kind_from_socket_name(name);
        if (!kind) fail(kind.error());
        // RFC 8314 / RFC 6409: submission means AUTH, and AUTH means TLS.
        if (*kind != smtpd::PortKind::smtp && !tls)
            fail(fmt::format("refusing to start: socket {} needs TLS (set tls_cert_file and tls_key_file)", name));
        auto fd = startup.sockets.take(name);
        if (!fd) fail(fd.error());
        sockets.emplace_back(std::move(fd).value(), *kind);
    }
    if (sockets.empty()) fail("refusing to start: no listening socket inherited from master");

    facteur::event::Loop loop;
    facteur::event::WorkerPool pool(loop, 2);
    auth_lookup::Client auth(loop, settings.auth_lookup_socket);
    smtpd::QmgrWakeup qmgr(loop, settings.qmgr_socket);
    queue::Spool spool(settings.spool_dir);
    smtpd::SessionServices services{settings, loop, pool, auth, qmgr, spool, tls ? &*tls : nullptr};
    smtpd::Server server(services);
    for (auto& [fd, kind] : sockets) server.listen(std::move(fd), kind);

    // Sessions get a moment to flush their 421; then the loop ends.
    facteur::event::ServerSignals signals(
        loop, [&server] { return server.sessions(); },
        [&server](std::function<void()> done) { server.shutdown(std::move(done)); }, std::chrono::seconds(2),
        tls ? &*tls : nullptr, settings.tls_cert_file);

    log::info("ready pid={} service={} sockets={} myhostname={} tls={}", getpid(), service, sockets.size(),
              settings.myhostname, tls ? "yes" : "no");
    loop.run();
    log::info("stopped");
    return 0;
}
