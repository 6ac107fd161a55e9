// STARTTLS (RFC 3207) and AUTH (RFC 4954, mechanisms PLAIN and LOGIN from
// libmail/sasl, passwords checked by authd and wiped after use).

#include <fmt/format.h>

#include "libmail/base64.hpp"
#include "libmail/log.hpp"
#include "libmail/secret.hpp"
#include "smtpd/smtp_session.hpp"

namespace facteur::smtpd {
namespace {

}  // namespace

void Session::cmd_starttls(const Command&) {
    if (connection_->is_tls()) return send(554, "5.5.1", "Error: TLS already active");
    if (services_.tls == nullptr) return send(454, "4.7.0", "TLS not available");
    send(220, "2.0.0", "Ready to start TLS");
    begin_wait();
    std::weak_ptr<Session> weak = weak_from_this();
    // Connection::start_tls drops whatever was pipelined after STARTTLS
    // in clear text (RFC 3207 §4.2) before the handshake.
    connection_->start_tls(services_.tls->get(), [weak](bool ok) {
        if (auto self = weak.lock()) self->tls_ready(ok);
    });
}

void Session::tls_ready(bool ok) {
    if (!ok) return;  // the connection closes; on_closed reports it
    // RFC 3207 §4.2: forget everything learnt before TLS.
    reset_transaction();
    helo_.clear();
    extended_ = false;
    auth_user_.clear();
    auth_method_.clear();
    mechanism_.reset();
    state_ = State::fresh;
    log::info("TLS established with {}: {} with cipher {} ({} bits)", client(), connection_->tls_version(),
              connection_->tls_cipher(), connection_->tls_cipher_bits());
    end_wait();
}

void Session::cmd_auth(const Command& command) {
    if (!extended_) return send(503, "5.5.1", "Error: send EHLO first");
    if (!auth_user_.empty()) return send(503, "5.5.1", "Error: already authenticated");
    if (!auth_offered()) {
        // RFC 4954 §6: the mechanism would be fine over TLS.
        return send(538, "5.7.11", "Encryption required for requested authentication mechanism");
    }
    auto argument = parse_auth_argument(command.argument);
    if (!argument) return send(501, "5.5.4", argument.error());
    mechanism_ = sasl::make_server_mechanism(argument->mechanism);
    if (!mechanism_) return send(504, "5.5.4", "Unsupported authentication mechanism");
    auth_method_ = std::string(mechanism_->name());
    std::optional<std::string> initial;
    if (argument->initial_response) {
        // RFC 4954 §4: "=" is an empty initial response.
        if (*argument->initial_response == "=") {
            initial = std::string();
        } else {
            initial = base64::decode(*argument->initial_response);
            if (!initial) {
                mechanism_.reset();
                return send(501, "5.5.2", "Error: invalid base64 data");
            }
        }
    }
    sasl::Step step = initial ? mechanism_->start(std::string_view(*initial)) : mechanism_->start(std::nullopt);
    if (initial) secret::wipe(*initial);
    sasl_step(step);
}

void Session::sasl_step(const sasl::Step& step) {
    switch (step.kind) {
        case sasl::Step::Kind::challenge:
            state_ = State::sasl;
            connection_->write(fmt::format("334 {}\r\n", base64::encode(step.challenge)));
            return;
        case sasl::Step::Kind::failed:
            state_ = State::greeted;
            log::info("{}: SASL {} authentication failed: {}", client(), auth_method_, step.error);
            mechanism_.reset();
            return send(535, "5.7.8", "Error: authentication failed");
        case sasl::Step::Kind::done:
            state_ = State::greeted;
            return sasl_verify();
    }
}

void Session::sasl_response(std::string& line) {
    std::string_view response = line;
    // The line ends in CRLF; a bare LF is refused like any command line.
    bool crlf = response.size() >= 2 && response.substr(response.size() - 2) == "\r\n";
    if (crlf) response.remove_suffix(2);
    if (!crlf) {
        secret::wipe(line);
        mechanism_.reset();
        state_ = State::greeted;
        return send(500, "5.5.2", "Error: bare LF received; use CRLF");
    }
    if (response == "*") {
        // RFC 4954 §4: the client cancels the exchange.
        secret::wipe(line);
        mechanism_.reset();
        state_ = State::greeted;
        return send(501, "5.0.0", "Authentication aborted");
    }
    std::optional<std::string> decoded = base64::decode(response);
    secret::wipe(line);
    if (!decoded) {
        mechanism_.reset();
        state_ = State::greeted;
        return send(501, "5.5.2", "Error: invalid base64 data");
    }
    sasl::Step step = mechanism_->step(*decoded);
    secret::wipe(*decoded);
    sasl_step(step);
}

void Session::sasl_verify() {
    const sasl::Credentials& credentials = mechanism_->credentials();
    // RFC 4616 §2: acting as someone else is not something we allow.
    if (!credentials.authzid.empty() && credentials.authzid != credentials.authcid) {
        log::info("{}: SASL {} authentication refused: authzid differs from authcid", client(), auth_method_);
        mechanism_.reset();
        return send(535, "5.7.8", "Error: authentication failed");
    }
    auth_lookup::VerifyRequest request;
    request.user = credentials.authcid;
    request.password = credentials.password;
    request.service = "smtp";
    request.client_ip = client_address_;
    std::string user = credentials.authcid;
    mechanism_.reset();  // wipes the password it held
    begin_wait();
    std::weak_ptr<Session> weak = weak_from_this();
    services_.auth.verify(request, [weak, user](Result<auth_lookup::VerifyReply> reply) {
        auto self = weak.lock();
        if (!self || self->state_ == State::closing) return;
        if (!reply) {
            log::warning("{}: SASL authentication: authd unavailable: {}", self->client(), reply.error());
            self->send(454, "4.7.0", "Temporary authentication failure");
        } else if (reply->result == auth_lookup::Outcome::ok) {
            self->auth_user_ = reply->user.empty() ? user : reply->user;
            log::info("{}: sasl_method={}, sasl_username={}", self->client(), self->auth_method_,
                      log::printable(self->auth_user_));
            self->send(235, "2.7.0", "Authentication successful");
        } else if (reply->result == auth_lookup::Outcome::tempfail) {
            self->send(454, "4.7.0", "Temporary authentication failure");
        } else {
            log::info("{}: SASL {} authentication failed for {}", self->client(), self->auth_method_, log::printable(user));
            self->send(535, "5.7.8", "Error: authentication failed");
        }
        self->end_wait();
    });
}

}  // namespace facteur::smtpd
