// Session-level SMTP commands: HELO, EHLO (and the extension list), RSET,
// NOOP, QUIT, HELP, VRFY, EXPN, and the one refused outright (TURN).
#include <fmt/format.h>

#include "libmail/log.hpp"
#include "smtpd/smtp_session.hpp"

namespace facteur::smtpd {
namespace {

// RFC 5321 §4.1.1.1: a domain or an address literal. Anything printable is
// taken (Postfix does too); it only ends up, made safe, in Received:.
bool acceptable_helo(std::string_view name) {
    if (name.empty() || name.size() > 255) return false;
    for (char c : name) {
        auto byte = static_cast<unsigned char>(c);
        if (byte <= 0x20 || byte == 0x7f) return false;
    }
    return true;
}

}  // namespace

bool Session::auth_offered() const {
    // DESIGN §5: passwords only over TLS unless the admin says otherwise.
    return connection_->is_tls() || !services_.settings.auth_requires_tls;
}

void Session::cmd_helo(const Command& command) {
    if (!acceptable_helo(command.argument)) return send(501, "5.5.4", "Syntax: HELO hostname");
    reset_transaction();
    helo_ = std::string(command.argument);
    extended_ = false;
    state_ = State::greeted;
    send(250, "", services_.settings.myhostname);
}

void Session::cmd_ehlo(const Command& command) {
    if (!acceptable_helo(command.argument)) return send(501, "5.5.4", "Syntax: EHLO hostname");
    // RFC 5321 §4.1.4: EHLO resets the transaction like RSET.
    reset_transaction();
    helo_ = std::string(command.argument);
    extended_ = true;
    state_ = State::greeted;
    std::vector<std::string> lines{
        services_.settings.myhostname,
        "PIPELINING",
        fmt::format("SIZE {}", services_.settings.message_size_limit),
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "SMTPUTF8",
        "CHUNKING",
        "BINARYMIME",
    };
    if (services_.tls != nullptr && !connection_->is_tls()) lines.emplace_back("STARTTLS");
    if (auth_offered() && auth_user_.empty()) lines.emplace_back("AUTH PLAIN LOGIN");
    if (etrn_offered()) lines.emplace_back("ETRN");
    lines.emplace_back("HELP");
    send_lines(250, "", lines);
}

void Session::cmd_rset(const Command&) {
    reset_transaction();
    send(250, "2.0.0", "Ok");
}

void Session::cmd_noop(const Command&) { send(250, "2.0.0", "Ok"); }

void Session::cmd_quit(const Command&) {
    ++counts_[static_cast<size_t>(Verb::quit)].ok;
    current_counted_ = true;
    close_session(Reply{221, "2.0.0", "Bye"});
}

void Session::cmd_help(const Command&) {
    send_lines(214, "2.0.0",
               {"Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY EXPN STARTTLS AUTH ETRN",
                "See RFC 5321; extensions are listed in the EHLO reply"});
}

void Session::cmd_vrfy(const Command&) {
    // RFC 5321 §3.5.3: 252 when we will not tell (address harvesting).
    send(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

void Session::cmd_not_implemented(const Command&) { send(502, "5.5.1", "Error: command not implemented"); }

void Session::cmd_expn(const Command& command) {
    // EXPN discloses list members: off unless enabled, and then only to
    // authenticated users (RFC 5321 §3.5.3, §7.3).
    if (!services_.settings.enable_expn || auth_user_.empty())
        return send(502, "5.5.1", "Error: command not implemented");
    std::string_view argument = command.argument;
    std::string target;
    if (!argument.empty() && argument.front() == '<') {
        auto path = address::parse_path(argument, address::PathOptions{});
        if (!path) return send(501, "5.1.3", "Bad address syntax");
        target = path->normalized();
    } else {
        auto path = address::parse_path(fmt::format("<{}>", argument), address::PathOptions{});
        if (!path) return send(501, "5.1.3", "Bad address syntax");
        target = path->normalized();
    }
    begin_wait();
    std::weak_ptr<Session> weak = weak_from_this();
    services_.auth.resolve(target, [weak, target](Result<auth_lookup::Resolution> resolution) {
        auto self = weak.lock();
        if (!self || self->state_ == State::closing) return;
        if (!resolution) {
            log::warning("EXPN lookup of {} failed: {}", log::printable(target), resolution.error());
            self->send(451, "4.3.0", "Error: temporary lookup failure");
        } else if (resolution->kind == auth_lookup::RecipientKind::alias && !resolution->targets.empty()) {
            std::vector<std::string> lines;
            for (const std::string& member : resolution->targets) lines.push_back(fmt::format("<{}>", member));
            self->send_lines(250, "2.1.5", lines);
        } else if (resolution->kind == auth_lookup::RecipientKind::local_user) {
            self->send(250, "2.1.5", fmt::format("<{}>", resolution->user ? resolution->user->address : target));
        } else {
            self->send(550, "5.1.1", fmt::format("<{}>: not a local list or user", target));
        }
        self->end_wait();
    });
}

}  // namespace facteur::smtpd
