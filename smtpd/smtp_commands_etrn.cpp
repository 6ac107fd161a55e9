// ETRN (RFC 1985): a trusted client asks us to retry now the mail queued
// for its domain. qmgr does the work (queue_control flush with a domain).
#include <fmt/format.h>

#include "libmail/log.hpp"
#include "smtpd/smtp_session.hpp"

namespace facteur::smtpd {

bool Session::etrn_offered() const {
    // Like Postfix's smtpd_etrn_restrictions default: announced on port
    // 25; on the submission ports only to an authenticated client.
    return kind_ == PortKind::smtp || !auth_user_.empty();
}

void Session::cmd_etrn(const Command& command) {
    auto argument = parse_etrn_argument(command.argument);
    if (!argument) return send(501, "5.5.4", argument.error());
    std::string node = std::string(argument->name);
    // Only clients we would relay for (mynetworks, or authenticated) may
    // start deliveries: anyone else could use ETRN to load the queue.
    if (!may_relay()) {
        log::notice("ETRN {} refused from {}: client not authorized", log::printable(command.argument), client());
        return send(459, "4.7.1", fmt::format("{}: client not authorized", node));
    }
    // RFC 1985 §5.2: named queues ("#name") are an option we do not have.
    if (argument->kind == EtrnArgument::Kind::queue)
        return send(458, "4.1.0", fmt::format("Unable to queue messages for node #{}: no named queues here", node));
    bool subdomains = argument->kind == EtrnArgument::Kind::subdomains;
    begin_wait();
    std::weak_ptr<Session> weak = weak_from_this();
    services_.qmgr.flush(node, subdomains, [weak, node, subdomains](Result<uint64_t> count) {
        auto self = weak.lock();
        if (!self || self->state_ == State::closing) return;
        if (!count) {
            log::warning("ETRN {}{} from {}: cannot reach qmgr: {}", subdomains ? "@" : "", node, self->client(),
                         count.error());
            self->send(458, "4.3.0", fmt::format("Unable to queue messages for node {}", node));
        } else {
            log::info("ETRN {}{} from {}: {} message(s) queued for delivery", subdomains ? "@" : "", node,
                      self->client(), *count);
            // RFC 1985 §5.1: 250 when delivery starts, 251 when nothing waits.
            if (*count == 0) self->send(251, "2.0.0", fmt::format("OK, no messages waiting for node {}", node));
            else self->send(250, "2.0.0", fmt::format("Queuing for node {} started", node));
        }
        self->end_wait();
    });
}

}  // namespace facteur::smtpd
