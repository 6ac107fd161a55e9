// Dovecot auth-client protocol server side, as Postfix's xsasl_dovecot
// client expects it.
#include "authd/auth_client_session.hpp"

#include <openssl/rand.h>
#include <unistd.h>

#include <fmt/format.h>

#include "authd/auth_client_protocol.hpp"
#include "libmail/base64.hpp"
#include "libmail/log.hpp"
#include "libmail/secret.hpp"

namespace facteur::authd {
namespace {

constexpr size_t kMaxLine = 16 * 1024;
constexpr size_t kMaxRequests = 128;

std::string cookie() {
    // Dovecot's cookie lets a login process prove a login to the master
    // (REQUEST); facteur has no such step, so it is informational.
    unsigned char random[16] = {};
    if (RAND_bytes(random, sizeof random) != 1) log::warning("auth-client: no random bytes for the COOKIE");
    std::string hex;
    for (unsigned char c : random) hex += fmt::format("{:02x}", c);
    return hex;
}

}  // namespace

AuthClientSession::AuthClientSession(std::shared_ptr<event::Connection> connection, PasswordChecker& checker,
                                     unsigned long cuid)
    : connection_(std::move(connection)), checker_(checker), cuid_(cuid) {}

void AuthClientSession::start(std::function<void()> on_closed) {
    std::weak_ptr<AuthClientSession> weak = shared_from_this();
    connection_->set_max_line_length(kMaxLine);
    // A client has a minute to introduce itself; after that the connection
    // may idle as long as it likes: Postfix keeps one open for the life of
    // each smtpd process, and closing it would fail that process's next AUTH.
    connection_->set_idle_timeout(std::chrono::minutes(1));
    connection_->on_readable([weak] {
        if (auto self = weak.lock()) self->on_readable();
    });
    connection_->on_close([on_closed](event::CloseReason) { on_closed(); });
    std::string greeting = "VERSION\t1\t2\n";
    // PLAIN and LOGIN carry the password itself: "plaintext" tells Postfix
    // to offer them only where smtpd_sasl_security_options allow it.
    for (const std::string& mechanism : sasl::supported_mechanisms()) {
        bool plaintext = mechanism == "PLAIN" || mechanism == "LOGIN";
        greeting += "MECH\t" + mechanism + (plaintext ? "\tplaintext\n" : "\n");
    }
    greeting += fmt::format("SPID\t{}\nCUID\t{}\nCOOKIE\t{}\nDONE\n", getpid(), cuid_, cookie());
    connection_->write(greeting);
    connection_->start();
}

void AuthClientSession::send(std::string_view line) {
    std::string out(line);
    out += '\n';
    connection_->write(out);
}

void AuthClientSession::on_readable() {
    auto keep = shared_from_this();
    std::string line;
    while (!connection_->closed()) {
        auto status = connection_->read_line(line);
        if (status == event::LineStatus::need_more) return;
        if (status == event::LineStatus::too_long) {
            log::warning("auth-client: line longer than {} bytes; closing", kMaxLine);
            connection_->close();
            return;
        }
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
        handle_line(line);
        // The line may hold a base64 password (resp= or CONT).
        secret::wipe(line);
    }
}

void AuthClientSession::handle_line(std::string_view line) {
    auto fields = split_tabs(line);
    std::string_view command = fields[0];
    if (!handshake_done_) {
        // The client must introduce itself first: VERSION with major 1.
        if (command == "VERSION" && fields.size() >= 2 && fields[1] == "1") {
            handshake_done_ = true;
            connection_->set_idle_timeout(std::chrono::milliseconds(0));
            return;
        }
        log::warning("auth-client: expected VERSION\\t1, got \"{}\"; closing", log::printable(line, 64));
        connection_->close();
        return;
    }
    if (command == "CPID" || command == "VERSION") return;
    if (command == "AUTH") return handle_auth(line);
    if (command == "CONT") return handle_cont(line);
    log::warning("auth-client: unknown command \"{}\"; closing", log::printable(command, 32));
    connection_->close();
}

void AuthClientSession::handle_auth(std::string_view line) {
    AuthCommand command;
    if (auto error = parse_auth(line, command)) {
        log::warning("auth-client: {}; closing", *error);
        connection_->close();
        return;
    }
    if (requests_.count(command.id) != 0 || requests_.size() >= kMaxRequests) {
        log::warning("auth-client: duplicate or too many requests (id {}); closing", command.id);
        connection_->close();
        return;
    }
    auto mechanism = sasl::make_server_mechanism(command.mechanism);
    if (!mechanism) {
        send(fmt::format("FAIL\t{}\treason=Unsupported authentication mechanism", command.id));
        return;
    }
    std::optional<std::string> initial;
    if (command.initial_response) {
        auto decoded = base64::decode(*command.initial_response);
        if (!decoded) {
            send(fmt::format("FAIL\t{}\treason=Invalid base64 data in initial response", command.id));
            return;
        }
        initial = std::move(*decoded);
    }
    Request& request = requests_[command.id];
    request.mechanism = std::move(mechanism);
    request.service = command.service;
    request.remote_ip = command.remote_ip;
    sasl::Step step = initial ? request.mechanism->start(std::string_view(*initial))
                              : request.mechanism->start(std::nullopt);
    if (initial) secret::wipe(*initial);
    if (command.initial_response) secret::wipe(*command.initial_response);
    advance(command.id, step);
}

void AuthClientSession::handle_cont(std::string_view line) {
    unsigned long id = 0;
    std::string data;
    if (auto error = parse_cont(line, id, data)) {
        log::warning("auth-client: {}; closing", *error);
        connection_->close();
        return;
    }
    auto found = requests_.find(id);
    if (found == requests_.end()) {
        // Dovecot answers a CONT for a request it no longer has (it failed
        // or timed out meanwhile) with a FAIL, and keeps the connection.
        send(fmt::format("FAIL\t{}\treason=Authentication request timed out", id));
        return;
    }
    if (found->second.checking) {
        log::warning("auth-client: CONT for request {} while its password is being checked; closing", id);
        connection_->close();
        return;
    }
    if (data == "*") return fail(id, "Aborted");
    auto decoded = base64::decode(data);
    secret::wipe(data);
    if (!decoded) return fail(id, "Invalid base64 data in continued response");
    sasl::Step step = found->second.mechanism->step(*decoded);
    secret::wipe(*decoded);
    advance(id, step);
}

void AuthClientSession::advance(unsigned long id, const sasl::Step& step) {
    Request& request = requests_[id];
    if (step.kind == sasl::Step::Kind::challenge) {
        send(fmt::format("CONT\t{}\t{}", id, base64::encode(step.challenge)));
        return;
    }
    if (step.kind == sasl::Step::Kind::failed) {
        // The mechanism's reason is for the log; the client learns only
        // that it failed.
        log::info("service={} rip={} mech={} result=fail reason=\"{}\"", log::printable(request.service),
                  log::printable(request.remote_ip), request.mechanism->name(), log::printable(step.error));
        return fail(id, kFailedReason);
    }
    const sasl::Credentials& credentials = request.mechanism->credentials();
    // RFC 4616 §2: authorizing as someone else needs a proxy right facteur
    // does not grant (Dovecot's master users); acting as oneself is fine.
    if (!credentials.authzid.empty() &&
        directory::lowercase(credentials.authzid) != directory::lowercase(credentials.authcid)) {
        log::info("service={} rip={} user=<{}> mech={} result=fail reason=\"authorization identity refused\"",
                  log::printable(request.service), log::printable(request.remote_ip),
                  log::printable(credentials.authcid), request.mechanism->name());
        return fail(id, kFailedReason);
    }
    request.checking = true;
    CheckRequest check;
    check.user = credentials.authcid;
    check.password = credentials.password;
    check.service = request.service;
    check.client_ip = request.remote_ip;
    check.mechanism = std::string(request.mechanism->name());
    std::weak_ptr<AuthClientSession> weak = shared_from_this();
    checker_.check(std::move(check), [weak, id](CheckResult result) {
        auto self = weak.lock();
        if (!self || self->connection_->closed()) return;
        if (result.result == auth_lookup::Outcome::ok) {
            self->requests_.erase(id);
            self->send(fmt::format("OK\t{}\tuser={}", id, tab_escape(result.user)));
            return;
        }
        self->fail(id, result.reason, result.result == auth_lookup::Outcome::tempfail, result.user);
    });
}

void AuthClientSession::fail(unsigned long id, std::string_view reason, bool temporary, std::string_view user) {
    requests_.erase(id);
    std::string line = fmt::format("FAIL\t{}", id);
    if (!user.empty()) line += "\tuser=" + tab_escape(user);
    if (temporary) line += "\ttemp";
    line += "\treason=" + tab_escape(reason);
    send(line);
}

}  // namespace facteur::authd
