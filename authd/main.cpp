// authd: the only process that reads password hashes. Wiring only: config,
// database, worker pool, throttle, and the three sockets master hands over.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "authd/auth_client_session.hpp"
#include "authd/lookup_service.hpp"
#include "authd/password_checker.hpp"
#include "authd/throttle.hpp"
#include "libmail/daemon.hpp"
#include "libmail/directory.hpp"
#include "libmail/directory_admin.hpp"
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

authd::ThrottleSettings throttle_settings(const config::Config& config) {
    authd::ThrottleSettings settings;
    settings.free_attempts = static_cast<int>(config.integer("authd", "failure_free_attempts"));
    settings.delay = config.duration("authd", "failure_delay");
    settings.delay_max = config.duration("authd", "failure_delay_max");
    settings.lockout_count = static_cast<int>(config.integer("authd", "failure_lockout_count"));
    settings.window = config.duration("authd", "failure_window");
    settings.lockout_time = config.duration("authd", "failure_lockout_time");
    return settings;
}

// The classic aliases(5) file, if there is one; a broken file is logged and
// ignored rather than taking authentication down.
void load_alias_file(const config::Config& config, directory::UserDatabase& database) {
    std::string path = config.path("alias_file");
    std::ifstream in(path);
    if (!in) {
        database.set_static_aliases({});
        return;
    }
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = directory::parse_aliases_file(text.str());
    if (!parsed) {
        log::error("{}: {}; ignoring the file", path, parsed.error());
        return;
    }
    log::info("loaded {} aliases from {}", parsed->size(), path);
    database.set_static_aliases(std::move(parsed).value());
}

}  // namespace

int main(int argc, char** argv) {
    daemon::Startup startup = daemon::start("authd", argc, argv);
    signal(SIGPIPE, SIG_IGN);
    config::Config config = startup.config;

    auto sasl_socket = startup.sockets.take("sasl");
    auto lookup_socket = startup.sockets.take("lookup");
    auto admin_socket = startup.sockets.take("admin");
    if (!sasl_socket) fail(sasl_socket.error());
    if (!lookup_socket) fail(lookup_socket.error());
    if (!admin_socket) fail(admin_socket.error());

    auto opened = directory::UserDatabase::open(config.path("auth_db"), true);
    if (!opened) fail(fmt::format("cannot open user database {}: {}", config.path("auth_db"), opened.error()));
    directory::UserDatabase database = std::move(opened).value();
    load_alias_file(config, database);

    event::Loop loop;
    event::WorkerPool pool(loop, static_cast<size_t>(config.integer("authd", "hash_workers")));
    authd::Throttle throttle(throttle_settings(config));
    authd::PasswordChecker checker(loop, pool, database, throttle);
    authd::LookupService lookups(database, checker, config.path("mail_dir"));

    // Who may ask: root, ourselves, and the daemons' own users.
    std::set<uid_t> trusted{0, geteuid()};
    for (const char* owner : {"mail_owner", "vmail_owner"}) {
        auto account = system::find_account(config.string(owner));
        if (account) trusted.insert(account->uid);
    }

    ipc::Server lookup_server(
        loop, std::move(lookup_socket).value(),
        [&](const ipc::Frame& request, const ipc::PeerCredentials& peer, ipc::Server::Responder respond) {
            lookups.handle(request, peer, std::move(respond));
        },
        [&](const ipc::PeerCredentials& peer) { return trusted.count(peer.uid) != 0; });

    uid_t self = geteuid();
    ipc::Server admin_server(
        loop, std::move(admin_socket).value(),
        [&](const ipc::Frame& request, const ipc::PeerCredentials& peer, ipc::Server::Responder respond) {
            auto op = request.get("op");
            log::info("admin: op={} uid={}", op ? log::printable(*op, 32) : "-", peer.uid);
            respond(directory_admin::serve(database, request));
        },
        [self](const ipc::PeerCredentials& peer) { return peer.uid == 0 || peer.uid == self; });

    // The SASL socket is open to every local user (Postfix runs as its own
    // user): what it offers is only a password check, throttled.
    unsigned long next_cuid = 1;
    std::map<unsigned long, std::shared_ptr<authd::AuthClientSession>> sessions;
    event::Listener sasl_listener(loop, std::move(sasl_socket).value(),
                                  [&](UniqueFd client, const sockaddr_storage&, socklen_t) {
                                      unsigned long cuid = next_cuid++;
                                      auto session = std::make_shared<authd::AuthClientSession>(
                                          event::Connection::create(loop, std::move(client)), checker, cuid);
                                      sessions[cuid] = session;
                                      session->start([&sessions, cuid] { sessions.erase(cuid); });
                                  });

    event::Signal on_term(loop, SIGTERM, [&] { loop.stop(); });
    event::Signal on_int(loop, SIGINT, [&] { loop.stop(); });
    event::Signal on_hup(loop, SIGHUP, [&] {
        auto fresh = config::Config::load(config.file());
        if (!fresh) {
            log::error("reload refused: {}", fresh.error());
            return;
        }
        config = std::move(fresh).value();
        throttle.set_settings(throttle_settings(config));
        load_alias_file(config, database);
        log::info("configuration reloaded");
    });

    log::info("authd pid={} ready (database {})", getpid(), config.path("auth_db"));
    loop.run();
    log::info("authd stopping");
    return 0;
}
