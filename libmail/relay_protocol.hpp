// The request qmgr sends relayd over relayd_socket and its reply: one ipc
// frame each way per (message, next hop). Defined once for both sides, and
// the next-hop syntax shared by relayhost, the transport table and relayd.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/delivery_protocol.hpp"
#include "libmail/ipc.hpp"
#include "libmail/result.hpp"

namespace facteur::relay {

// Where mail goes next (Postfix syntax): "example.org" (its MX records),
// "host:587" (MX lookup of host, port 587), "[host]:587" or "[host]" (no MX
// lookup: the host's own addresses), "[192.0.2.1]:25" / "[ipv6:2001:db8::1]"
// (an address literal). Port defaults to 25.
struct Nexthop {
    std::string host;    // domain or host name, or a numeric address
    uint16_t port = 25;
    bool mx_lookup = true;
    bool literal = false;  // host is a numeric IPv4/IPv6 address

    // The canonical text form, as parse() accepts it ("[mx.example]:587").
    std::string text() const;
};
// Fails with a message for: empty host, bad port, unbalanced brackets,
// characters that cannot be in a host name.
Result<Nexthop> parse_nexthop(std::string_view text);

// Wire format. Request: op=relay, queue_id, queue_file (absolute path of the
// queue file in active/, which relayd opens read-only and reads the envelope
// from: sender, ENVID, RET, body type, SMTPUTF8, each recipient's NOTIFY and
// ORCPT), nexthop (Nexthop::text()), then one `recipient` attribute per
// recipient to send: the decimal index of the recipient in the envelope.
// Reply: status=ok, then one `result` nested frame per recipient, same order:
//   outcome = sent | deferred | bounced, dsn (e.g. 2.0.0, 4.4.1, 5.1.1),
//   reason (one line: the remote reply, or what went wrong),
//   relay (the server that answered, "mx.example.org[192.0.2.1]:25", or
//   "none" when no server was reached),
//   remote_dsn = yes | no: yes when the server announced DSN and was given
//   this recipient's NOTIFY/ORCPT, so further notifications are its job
//   (qmgr then sends no "relayed" success report, RFC 3461 §6.2.3).
// A reply that is not status=ok (error_reply) means nothing was sent.
struct Request {
    std::string queue_id;
    std::string queue_file;
    Nexthop nexthop;
    std::vector<size_t> recipients;  // indices into the envelope's recipients
};

struct RecipientResult {
    delivery::Outcome outcome = delivery::Outcome::deferred;
    std::string dsn;
    std::string reason;
    std::string relay = "none";
    bool remote_dsn = false;
};

ipc::Frame encode_request(const Request& request);
Result<Request> decode_request(const ipc::Frame& frame);

ipc::Frame encode_reply(const std::vector<RecipientResult>& results);
// Fails unless status=ok and exactly `expected` results are present.
Result<std::vector<RecipientResult>> decode_reply(const ipc::Frame& frame, size_t expected);

}  // namespace facteur::relay
