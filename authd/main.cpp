// authd: the only process that reads password hashes. Wiring only: config,
// database, worker pool, throttle, and the three sockets master hands over.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "authd/admin_service.hpp"
#include "authd/auth_client_session.hpp"
#include "authd/lookup_service.hpp"
#include "authd/password_checker.hpp"
#include "authd/throttle.hpp"
#include "libmail/daemon.hpp"
#include "libmail/directory.hpp"
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
    std::ifstream in(path, std::ios::binary);
    if (path.empty() || !in) {
        database.set_static_aliases({});
        return;
    }
    // Bounded read: an aliases file is a few kilobytes; anything huge is a
    // mistake, not something to load into memory.
    constexpr size_t kMaxAliasFile = 16 * 1024 * 1024;
    std::string text(kMaxAliasFile + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxAliasFile) {
        log::error("{}: larger than {} bytes; ignoring the file", path, kMaxAliasFile);
        return;
    }
    // A broken file keeps the aliases loaded before (none at start-up).
    auto parsed = directory::parse_aliases_file(text);
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
    if (!sasl_socket) fail(sasl_socket.error());
    auto lookup_socket = startup.sockets.take("lookup");
    if (!lookup_socket) fail(lookup_socket.error());
    auto admin_socket = startup.sockets.take("admin");
    if (!admin_socket) fail(admin_socket.error());

    // master made the database's directory; the file itself is ours.
    std::string database_path = config.path("auth_db");
    auto opened = directory::UserDatabase::open(database_path, true);
    if (!opened) fail(fmt::format("cannot open user database {}: {}", database_path, opened.error()));
    directory::UserDatabase database = std::move(opened).value();
    load_alias_file(config, database);

    facteur::event::Loop loop;
    facteur::event::WorkerPool pool(loop, static_cast<size_t>(config.integer("authd", "hash_workers")));
    authd::Throttle throttle(throttle_settings(config));
    authd::PasswordChecker checker(loop, pool, database, throttle);

    // Who may use the lookup socket: root, ourselves, and the daemons' users.
    uid_t self = geteuid();
    std::set<uid_t> allowed{0, self};
    for (const char* owner : {"mail_owner", "vmail_owner"}) {
        auto account = system::find_account(config.string(owner));
        if (account) allowed.insert(account->uid);
    }
    authd::LookupService lookups(database, checker, config.path("mail_dir"), allowed, {0, self});
    ipc::Server lookup_server(
        loop, std::move(lookup_socket).value(),
        [&lookups](const ipc::Frame& request, const ipc::PeerCredentials& peer, ipc::Server::Responder respond) {
            lookups.handle(request, peer, std::move(respond));
        },
        [&lookups](const ipc::PeerCredentials& peer) { return lookups.allow(peer); });

    authd::AdminService admin(database, self);
    ipc::Server admin_server(
        loop, std::move(admin_socket).value(),
        [&admin](const ipc::Frame& request, const ipc::PeerCredentials& peer, ipc::Server::Responder respond) {
            respond(admin.handle(request, peer));
        },
        [&admin](const ipc::PeerCredentials& peer) { return admin.allow(peer); });

    // The SASL socket is open to local users (Postfix runs as its own user;
    // the socket's mode decides): it offers only throttled password checks.
    unsigned long next_cuid = 1;
    std::map<unsigned long, std::shared_ptr<authd::AuthClientSession>> sessions;
    facteur::event::Listener sasl_listener(loop, std::move(sasl_socket).value(),
                                  [&](UniqueFd client, const sockaddr_storage&, socklen_t) {
                                      unsigned long cuid = next_cuid++;
                                      auto session = std::make_shared<authd::AuthClientSession>(
                                          facteur::event::Connection::create(loop, std::move(client)), checker, cuid);
                                      sessions[cuid] = session;
                                      session->start([&sessions, cuid] { sessions.erase(cuid); });
                                  });

    facteur::event::Signal on_term(loop, SIGTERM, [&loop] { loop.stop(); });
    facteur::event::Signal on_int(loop, SIGINT, [&loop] { loop.stop(); });
    facteur::event::Signal on_hup(loop, SIGHUP, [&] {
        if (!daemon::reload(config)) return;
        throttle.set_settings(throttle_settings(config));
        load_alias_file(config, database);
        log::info("configuration reloaded from {}", config.file());
    });

    log::info("ready pid={} database={} hash_workers={}", getpid(), database_path,
              config.integer("authd", "hash_workers"));
    loop.run();
    log::info("stopping");
    sessions.clear();
    return 0;
}
