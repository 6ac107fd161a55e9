// pop3d: facteur's POP3 server (ports 110 and 995). Wiring only: settings,
// TLS, the sockets master handed over, the authd client, the worker pool,
// the loop.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include "libmail/auth_lookup.hpp"
#include "libmail/daemon.hpp"
#include "libmail/event.hpp"
#include "libmail/log.hpp"
#include "libmail/tls.hpp"
#include "pop3d/server.hpp"
#include "pop3d/settings.hpp"

using namespace facteur;

namespace {

bool logging_to_stderr = true;

// Workers for mailbox snapshots and commits (blocking file I/O, fsync).
constexpr size_t kWorkerThreads = 4;

// CONVENTIONS: a process that cannot go on exits 1 with one clear line,
// also on stderr when the log goes to syslog, for an admin in a terminal.
[[noreturn]] void fail(const std::string& message) {
    log::error("{}", message);
    if (!logging_to_stderr) std::fprintf(stderr, "pop3d: %s\n", message.c_str());
    std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
    daemon::Startup startup = daemon::start("pop3d", argc, argv);
    logging_to_stderr = startup.config.string("log_target") == "stderr";
    auto loaded = pop3d::load_settings(startup.config);
    if (!loaded) fail(fmt::format("refusing to start: {}", loaded.error()));
    const pop3d::Settings settings = std::move(loaded).value();

    std::optional<tls::Context> tls;
    if (settings.tls_configured()) {
        auto context = tls::Context::server(settings.tls_cert_file, settings.tls_key_file);
        if (!context) fail(fmt::format("refusing to start: TLS: {}", context.error()));
        tls.emplace(std::move(context).value());
    }

    std::vector<std::pair<UniqueFd, pop3d::PortKind>> sockets;
    for (const std::string& name : startup.sockets.names()) {
        auto kind = pop3d::port_kind_from_socket_name(name);
        if (!kind) fail(kind.error());
        // RFC 8314: 995 is TLS from the first byte, never clear text.
        if (*kind == pop3d::PortKind::pop3s && !tls)
            fail(fmt::format("refusing to start: socket {} needs TLS (set tls_cert_file and tls_key_file)", name));
        auto fd = startup.sockets.take(name);
        if (!fd) fail(fd.error());
        sockets.emplace_back(std::move(fd).value(), *kind);
    }
    if (sockets.empty()) fail("refusing to start: no listening socket inherited from master");

    facteur::event::Loop loop;
    facteur::event::WorkerPool pool(loop, kWorkerThreads);
    auth_lookup::Client auth(loop, settings.auth_lookup_socket);
    pop3d::SessionServices services{settings, loop, pool, auth, tls ? &*tls : nullptr};
    pop3d::Server server(services);
    for (auto& [fd, kind] : sockets) server.listen(std::move(fd), kind);

    // Sessions get a moment to flush their reply and save \Seen flags;
    // a commit still running then is finished by the pool's destructor.
    facteur::event::ServerSignals signals(
        loop, [&server] { return server.sessions(); },
        [&server](std::function<void()> done) { server.shutdown(std::move(done)); }, std::chrono::seconds(5),
        tls ? &*tls : nullptr, settings.tls_cert_file);

    log::info("ready pid={} sockets={} myhostname={} tls={} plaintext_auth={} apop={}", getpid(), sockets.size(),
              settings.myhostname, tls ? "yes" : "no", pop3d::plaintext_auth_name(settings.plaintext_auth),
              settings.apop ? "yes" : "no");
    loop.run();
    log::info("stopped");
    return 0;
}
