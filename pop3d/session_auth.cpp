// The AUTHORIZATION state (RFC 1939 §4): CAPA (RFC 2449), USER/PASS and
// APOP (RFC 1939 §7), AUTH (RFC 5034) with libmail's SASL mechanisms, STLS
// (RFC 2595 §4), the plaintext policy, and the way into TRANSACTION: authd
// checks, the session lock, and the mailbox snapshot opened off the loop.

#include <algorithm>

#include <fmt/format.h>

#include "libmail/ascii.hpp"
#include "libmail/base64.hpp"
#include "libmail/log.hpp"
#include "libmail/secret.hpp"
#include "pop3d/session.hpp"

namespace facteur::pop3d {
namespace {

constexpr std::string_view kPlaintextRefused = "[AUTH] Plaintext authentication disallowed on non-secure connections";

bool is_loopback(std::string_view address) {
    // Connection::peer_address shows IPv4-mapped IPv6 as IPv4.
    return address.substr(0, 4) == "127." || address == "::1";
}

// Mechanisms that carry the password in clear (base64 is no protection).
bool sends_password_in_clear(std::string_view mechanism) {
    return ascii::iequals(mechanism, "PLAIN") || ascii::iequals(mechanism, "LOGIN");
}

bool is_hex_digest(std::string_view digest) {
    if (digest.size() != 32) return false;
    return std::all_of(digest.begin(), digest.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    });
}

}  // namespace

// The outcome of taking the lock and opening the snapshot on a worker.
struct Session::Opened {
    bool in_use = false;
    std::string error;  // not empty: failed
    std::shared_ptr<OpenMailbox> mailbox;
};

bool Session::plaintext_allowed() const {
    if (connection_->is_tls()) return true;
    switch (services_.settings.plaintext_auth) {
        case PlaintextAuth::yes: return true;
        case PlaintextAuth::no: return false;
        case PlaintextAuth::loopback: return is_loopback(client_address_);
    }
    return false;
}

bool Session::mechanism_allowed(std::string_view mechanism) const {
    return !sends_password_in_clear(mechanism) || plaintext_allowed();
}

std::vector<std::string> Session::allowed_mechanisms() const {
    std::vector<std::string> allowed;
    for (std::string& name : sasl::supported_mechanisms())
        if (mechanism_allowed(name)) allowed.push_back(std::move(name));
    return allowed;
}

bool Session::stls_offered() const {
    return kind_ == PortKind::pop3 && services_.tls != nullptr && !connection_->is_tls() &&
           state_ == State::authorization;
}

void Session::cmd_capa(const Command&) {
    // RFC 2449 §5: what is available in AUTHORIZATION is announced in both
    // states; STLS only where it can still be used.
    std::string text = "+OK Capability list follows\r\nTOP\r\n";
    if (plaintext_allowed()) text += "USER\r\n";
    text += "UIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n";
    std::vector<std::string> mechanisms = allowed_mechanisms();
    if (!mechanisms.empty()) text += fmt::format("SASL {}\r\n", fmt::join(mechanisms, " "));
    if (stls_offered()) text += "STLS\r\n";
    text += "IMPLEMENTATION facteur\r\n.\r\n";
    connection_->write(text);
}

void Session::cmd_user(const Command& command) {
    if (!plaintext_allowed()) return err(kPlaintextRefused);
    if (command.arguments.size() != 1 || command.arguments[0].empty()) return err("Usage: USER name");
    user_ = std::string(command.arguments[0]);
    ok("Send your password");
}

void Session::cmd_pass(const Command& command) {
    if (!plaintext_allowed()) return err(kPlaintextRefused);
    if (user_.empty()) return err("No user name given (send USER first)");
    // RFC 1939 §7: the argument is everything after "PASS ", spaces included.
    std::string user = std::move(user_);
    user_.clear();
    check_password(std::move(user), std::string(command.rest), "USER");
}

void Session::cmd_apop(const Command& command) {
    if (timestamp_.empty()) return err("APOP not available");
    if (command.arguments.size() != 2 || command.arguments[0].empty() || !is_hex_digest(command.arguments[1]))
        return err("Usage: APOP name digest");
    user_.clear();
    auth_lookup::ApopRequest request;
    request.user = std::string(command.arguments[0]);
    request.timestamp = timestamp_;
    request.digest = std::string(command.arguments[1]);
    request.service = "pop3";
    request.client_ip = client_address_;
    std::string user = request.user;
    begin_wait();
    std::weak_ptr<Session> weak = weak_from_this();
    services_.auth.verify_apop(request, [weak, user](Result<auth_lookup::VerifyReply> reply) {
        if (auto self = weak.lock()) self->verified(user, "APOP", std::move(reply));
    });
}

void Session::check_password(std::string user, std::string password, std::string method) {
    auth_lookup::VerifyRequest request;  // wipes the password when it goes
    request.user = user;
    request.password = std::move(password);
    secret::wipe(password);
    request.service = "pop3";
    request.client_ip = client_address_;
    begin_wait();
    std::weak_ptr<Session> weak = weak_from_this();
    services_.auth.verify(request, [weak, user, method](Result<auth_lookup::VerifyReply> reply) {
        if (auto self = weak.lock()) self->verified(user, method, std::move(reply));
    });
}

void Session::cmd_auth(const Command& command) {
    if (command.arguments.empty()) {
        // Before RFC 5034, clients listed the mechanisms with a bare AUTH
        // (RFC 1734 servers answered this way); Outlook still asks.
        std::string text = "+OK\r\n";
        for (const std::string& name : allowed_mechanisms()) text += name + "\r\n";
        text += ".\r\n";
        connection_->write(text);
        return;
    }
    if (command.arguments.size() > 2 || command.arguments[0].empty())
        return err("Usage: AUTH mechanism [initial-response]");
    mechanism_ = sasl::make_server_mechanism(command.arguments[0]);
    if (!mechanism_) return err("Unsupported authentication mechanism");
    if (!mechanism_allowed(mechanism_->name())) {
        mechanism_.reset();
        return err(kPlaintextRefused);
    }
    user_.clear();
    auth_method_ = fmt::format("AUTH={}", mechanism_->name());
    std::optional<std::string> initial;
    if (command.arguments.size() == 2) {
        // RFC 5034 §4: "=" is an empty initial response.
        if (command.arguments[1] == "=") {
            initial = std::string();
        } else {
            initial = base64::decode(command.arguments[1]);
            if (!initial) {
                mechanism_.reset();
                return err("Invalid base64 data in initial response");
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
            // RFC 5034 §4: "+" SP base64 challenge (may be empty).
            state_ = State::sasl;
            connection_->write(fmt::format("+ {}\r\n", base64::encode(step.challenge)));
            return;
        case sasl::Step::Kind::failed: {
            state_ = State::authorization;
            std::string user = mechanism_->credentials().authcid;
            mechanism_.reset();
            return login_failed(user, auth_method_, step.error);
        }
        case sasl::Step::Kind::done: {
            state_ = State::authorization;
            const sasl::Credentials& credentials = mechanism_->credentials();
            // RFC 4616 §2: acting as someone else is not something we allow.
            if (!credentials.authzid.empty() && credentials.authzid != credentials.authcid) {
                std::string user = credentials.authcid;
                mechanism_.reset();
                return login_failed(user, auth_method_, "authzid differs from authcid");
            }
            std::string user = credentials.authcid;
            std::string password = credentials.password;
            mechanism_.reset();  // wipes the password it held
            check_password(std::move(user), std::move(password), auth_method_);
            return;
        }
    }
}

void Session::cancel_sasl() {
    mechanism_.reset();
    if (state_ == State::sasl) state_ = State::authorization;
}

void Session::sasl_response(std::string& line) {
    std::string_view response = strip_line_ending(line);
    if (response == "*") {
        // RFC 5034 §4: the client cancels; the server answers -ERR.
        secret::wipe(line);
        cancel_sasl();
        return err("Authentication cancelled");
    }
    std::optional<std::string> decoded = base64::decode(response);
    secret::wipe(line);
    if (!decoded) {
        cancel_sasl();
        return err("Invalid base64 data");
    }
    sasl::Step step = mechanism_->step(*decoded);
    secret::wipe(*decoded);
    sasl_step(step);
}

void Session::verified(const std::string& asked_user, const std::string& method,
                       Result<auth_lookup::VerifyReply> reply) {
    if (state_ == State::closing) return;
    if (!reply) return login_temporary_failure(asked_user, method, reply.error());
    switch (reply->result) {
        case auth_lookup::Outcome::tempfail:
            return login_temporary_failure(asked_user, method, reply->reason);
        case auth_lookup::Outcome::fail:
            // Unknown user, bad password and disabled user look the same.
            return login_failed(asked_user, method, reply->reason);
        case auth_lookup::Outcome::ok:
            break;
    }
    std::string user = reply->user.empty() ? asked_user : reply->user;
    std::weak_ptr<Session> weak = weak_from_this();
    services_.auth.find_user(user, [weak, user, method](Result<std::optional<auth_lookup::UserInfo>> found) {
        auto self = weak.lock();
        if (!self || self->state_ == State::closing) return;
        if (!found) return self->login_temporary_failure(user, method, found.error());
        if (!found->has_value()) return self->login_failed(user, method, "user vanished after the password check");
        self->user_found(method, std::move(found));
    });
}

void Session::login_temporary_failure(const std::string& user, const std::string& method, std::string_view why) {
    log::warning("login failed user=<{}> ip={} method={} reason=\"temporary failure: {}\"", log::printable(user),
                 client(), method, log::printable(why));
    err_uncounted("[SYS/TEMP] Temporary authentication failure, try again later");
    end_wait();
}

void Session::login_failed(const std::string& user, const std::string& method, std::string_view why) {
    ++failures_;
    log::info("login failed user=<{}> ip={} method={} reason=\"{}\" failures={}", log::printable(user), client(),
              method, log::printable(why), failures_);
    begin_wait();
    // The pause slows password guessing; nothing is read meanwhile.
    delayed_ = [this] {
        if (failures_ >= services_.settings.login_failure_limit) {
            close_session("-ERR [AUTH] Too many failures");
            return;
        }
        err_uncounted("[AUTH] Authentication failed.");
        end_wait();
    };
    delay_timer_.start(services_.settings.auth_failure_delay);
}

void Session::user_found(const std::string& method, Result<std::optional<auth_lookup::UserInfo>> found) {
    const auth_lookup::UserInfo& info = **found;
    if (!info.enabled) return login_failed(info.address, method, "user disabled");
    auto format = store::parse_format(info.format);
    if (!format) {
        log::error("login failed user=<{}> ip={}: {}", log::printable(info.address), client(), format.error());
        err_uncounted("[SYS/PERM] Mailbox not available, contact the administrator");
        return end_wait();
    }
    std::string user = info.address;
    std::string mail_path = info.mail_path;
    store::Format mailbox_format = *format;
    std::weak_ptr<Session> weak = weak_from_this();
    // Taking the lock may create the user's folder and opening a big mbox
    // reads all of it: both run on a worker, never on the loop.
    services_.pool.submit<Opened>(
        [mail_path, mailbox_format]() -> Opened {
            Opened opened;
            auto lock = store::SessionLock::try_acquire(mail_path);
            if (!lock) {
                opened.error = lock.error();
                return opened;
            }
            if (!lock->has_value()) {
                opened.in_use = true;
                return opened;
            }
            auto mailbox = store::open_inbox(mail_path, mailbox_format);
            if (!mailbox) {
                opened.error = mailbox.error();
                return opened;
            }
            opened.mailbox =
                std::make_shared<OpenMailbox>(OpenMailbox{std::move(mailbox).value(), std::move(**lock)});
            return opened;
        },
        [weak, user, method](Opened opened) {
            if (auto self = weak.lock()) self->mailbox_opened(user, method, std::move(opened));
        });
}

void Session::mailbox_opened(const std::string& user, const std::string& method, Opened opened) {
    // A client gone meanwhile: `opened` goes away here, and the lock with it.
    if (state_ != State::authorization) return;
    if (!opened.error.empty()) {
        log::error("login failed user=<{}> ip={}: cannot open the mailbox: {}", log::printable(user), client(),
                   opened.error);
        err_uncounted("[SYS/TEMP] Cannot open the mailbox, try again later");
        return end_wait();
    }
    if (opened.in_use) {
        log::info("login refused user=<{}> ip={}: mailbox in use by another POP3 session", log::printable(user),
                  client());
        err_uncounted("[IN-USE] Mailbox is locked by another POP3 session");
        return end_wait();
    }
    mailbox_ = std::move(opened.mailbox);
    const store::Mailbox& mailbox = *mailbox_->mailbox;
    count_ = mailbox.count();
    deleted_.assign(count_, false);
    accessed_.assign(count_, false);
    deleted_count_ = 0;
    kept_size_ = 0;
    for (size_t i = 0; i < count_; ++i) kept_size_ += mailbox.size(i);
    auth_user_ = user;
    state_ = State::transaction;
    connection_->set_idle_timeout(services_.settings.idle_timeout + std::chrono::seconds(30));
    log::info("login user=<{}> ip={} method={} tls={} messages={} size={}", log::printable(user), client(), method,
              connection_->is_tls() ? "yes" : "no", count_, kept_size_);
    ok("Logged in.");
    end_wait();
}

void Session::cmd_stls(const Command&) {
    if (connection_->is_tls()) return err("TLS already active");
    if (services_.tls == nullptr) return err("TLS not available");
    ok("Begin TLS negotiation");
    user_.clear();
    begin_wait();
    std::weak_ptr<Session> weak = weak_from_this();
    // Connection::start_tls drops whatever was pipelined after STLS in
    // clear text before the handshake (RFC 2595 §4, like RFC 3207 §4.2).
    connection_->start_tls(services_.tls->get(), [weak](bool ok) {
        if (auto self = weak.lock()) self->tls_ready(ok);
    });
}

void Session::tls_ready(bool ok) {
    if (!ok) return;  // the connection closes; on_closed reports it
    log::info("TLS established with {}: {} with cipher {} ({} bits)", client(), connection_->tls_version(),
              connection_->tls_cipher(), connection_->tls_cipher_bits());
    end_wait();
}

void Session::cmd_quit(const Command&) { close_session("+OK Bye"); }

}  // namespace facteur::pop3d
