// The envelope: MAIL FROM (RFC 5321 §4.1.1.2 with SIZE, BODY, SMTPUTF8 and
// DSN parameters) and RCPT TO (§4.1.1.3), where recipients are checked with
// authd and the relay rules are applied (DESIGN §5).
#include <fmt/format.h>

#include "libmail/log.hpp"
#include "smtpd/relay_policy.hpp"
#include "smtpd/smtp_session.hpp"

namespace facteur::smtpd {

bool Session::may_relay() const {
    return !auth_user_.empty() || services_.settings.mynetworks.contains(client_address_);
}

void Session::reset_transaction() {
    sender_.clear();
    mail_options_ = MailOptions{};
    recipients_.clear();
    if (writer_) writer_->abort();
    writer_.reset();
    data_reader_.reset();
    chunk_scanner_.reset();
    std::string().swap(header_buffer_);
    header_buffering_ = false;
    store_failed_ = false;
    if (state_ == State::mail || state_ == State::rcpt || state_ == State::data || state_ == State::bdat)
        state_ = helo_.empty() ? State::fresh : State::greeted;
}

void Session::cmd_mail(const Command& command) {
    // RFC 6409 §4.3 / RFC 4954: submission ports take mail from users only.
    if (kind_ != PortKind::smtp && auth_user_.empty()) return send(530, "5.7.0", "Authentication required");
    auto split = split_mail_argument(command.argument);
    if (!split) return send(501, "5.1.7", fmt::format("Bad sender address syntax: {}", split.error()));
    auto parameters = address::parse_esmtp_parameters(split->parameters);
    if (!parameters) return send(501, "5.5.4", fmt::format("Bad parameters: {}", parameters.error()));
    // An 8-bit address needs SMTPUTF8 in the same command (RFC 6531 §3.4).
    address::PathOptions options;
    options.allow_null = true;
    options.allow_utf8 = address::find_parameter(*parameters, "SMTPUTF8").has_value();
    auto path = address::parse_path(split->path, options);
    if (!path) {
        options.allow_utf8 = true;
        if (address::parse_path(split->path, options)) {
            return send(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8");
        }
        log::info("NOQUEUE: reject: MAIL from {}: bad sender syntax: {}", client(), log::printable(path.error()));
        return send(501, "5.1.7", fmt::format("Bad sender address syntax: {}", path.error()));
    }
    MailOptions mail_options;
    if (auto refusal = parse_mail_parameters(*parameters, services_.settings.message_size_limit, mail_options)) {
        log::info("NOQUEUE: reject: MAIL from {}: {} {} {}; from=<{}>", client(), refusal->code, refusal->enhanced,
                  refusal->text, log::printable(path->to_string()));
        return send(*refusal);
    }
    sender_ = path->to_string();
    mail_options_ = std::move(mail_options);
    state_ = State::mail;
    send(250, "2.1.0", "Ok");
}

void Session::reject_recipient(const Reply& reply, std::string_view recipient) {
    log::info("NOQUEUE: reject: RCPT from {}: {} {} {}; from=<{}> to=<{}> proto={} helo=<{}>", client(), reply.code,
              reply.enhanced, log::printable(reply.text), log::printable(sender_), log::printable(recipient),
              extended_ ? "ESMTP" : "SMTP", log::printable(helo_));
    send(reply);
}

void Session::cmd_rcpt(const Command& command) {
    auto split = split_mail_argument(command.argument);
    if (!split) {
        return reject_recipient(Reply{501, "5.1.3", fmt::format("Bad recipient address syntax: {}", split.error())},
                                command.argument);
    }
    address::PathOptions options;
    options.allow_postmaster = true;
    options.allow_utf8 = mail_options_.smtputf8;
    auto parsed_path = address::parse_path(split->path, options);
    if (!parsed_path) {
        return reject_recipient(
            Reply{501, "5.1.3", fmt::format("Bad recipient address syntax: {}", parsed_path.error())}, split->path);
    }
    const address::Path& path = *parsed_path;
    std::string recipient = path.to_string();
    auto parameters = address::parse_esmtp_parameters(split->parameters);
    if (!parameters) {
        return reject_recipient(Reply{501, "5.5.4", fmt::format("Bad parameters: {}", parameters.error())}, recipient);
    }
    RcptOptions rcpt_options;
    if (auto refusal = parse_rcpt_parameters(*parameters, rcpt_options)) return reject_recipient(*refusal, recipient);
    if (recipients_.size() >= services_.settings.recipient_limit)
        return reject_recipient(Reply{452, "4.5.3", "Error: too many recipients"}, recipient);

    bool trusted = may_relay();
    bool disguised = is_disguised_relay(path);
    // Without the right to relay, a routing local part is refused before
    // any lookup: at a remote domain it is a relay attempt anyway, at ours
    // it asks us to relay on (user%other@local, "user@other"@local, other!user@local).
    if (disguised && !trusted) {
        return reject_recipient(Reply{550, "5.7.1", fmt::format("<{}>: Relay access denied", recipient)}, recipient);
    }
    // RFC 5321 §4.1.1.3: <Postmaster> without a domain is this host's.
    std::string lookup = path.domain.empty() ? fmt::format("postmaster@{}", services_.settings.myhostname)
                                             : path.normalized();
    begin_wait();
    std::weak_ptr<Session> weak = weak_from_this();
    services_.auth.resolve(lookup, [weak, path, rcpt_options, trusted](Result<auth_lookup::Resolution> resolution) {
        auto self = weak.lock();
        if (!self || self->state_ == State::closing) return;
        self->recipient_resolved(path, rcpt_options, trusted, std::move(resolution));
        self->end_wait();
    });
}

void Session::recipient_resolved(const address::Path& path, const RcptOptions& options, bool trusted,
                                 Result<auth_lookup::Resolution> resolution) {
    std::string recipient = path.to_string();
    if (!resolution) {
        log::warning("recipient lookup of {} failed: {}", log::printable(recipient), resolution.error());
        return reject_recipient(Reply{451, "4.3.0", fmt::format("<{}>: Temporary lookup failure", recipient)}, recipient);
    }
    RecipientClass kind = RecipientClass::remote;
    switch (resolution->kind) {
        case auth_lookup::RecipientKind::local_user:
        case auth_lookup::RecipientKind::alias:
            kind = RecipientClass::local;
            break;
        case auth_lookup::RecipientKind::unknown_local:
            kind = RecipientClass::unknown_local;
            break;
        case auth_lookup::RecipientKind::remote:
            kind = RecipientClass::remote;
            break;
    }
    // The bare postmaster must be ours: relaying it elsewhere makes no sense.
    if (path.domain.empty() && kind == RecipientClass::remote) kind = RecipientClass::unknown_local;
    switch (judge_recipient(kind, is_disguised_relay(path), trusted)) {
        case RelayVerdict::accept:
            break;
        case RelayVerdict::unknown_user:
            return reject_recipient(
                Reply{550, "5.1.1", fmt::format("<{}>: Recipient address rejected: User unknown", recipient)}, recipient);
        case RelayVerdict::relay_denied:
            return reject_recipient(Reply{554, "5.7.1", fmt::format("<{}>: Relay access denied", recipient)}, recipient);
        case RelayVerdict::disguised_relay:
            return reject_recipient(Reply{550, "5.7.1", fmt::format("<{}>: Relay access denied", recipient)}, recipient);
    }
    queue::Recipient entry;
    entry.address = path.domain.empty() ? fmt::format("postmaster@{}", services_.settings.myhostname) : recipient;
    entry.orcpt = options.orcpt;
    entry.notify = options.notify;
    recipients_.push_back(std::move(entry));
    state_ = State::rcpt;
    send(250, "2.1.5", "Ok");
}

}  // namespace facteur::smtpd
