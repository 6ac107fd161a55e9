// qmgr's socket (qmgr_socket): wake-ups from smtpd and sendmail, and the
// queue commands of `facteur queue` and mailq. One ipc frame each way.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/ipc.hpp"
#include "libmail/result.hpp"

namespace facteur::queue_control {

// Requests (attribute `op`):
//   wakeup                        new mail in incoming/ or maildrop/; reply ok
//   list                          reply ok + one `message` attribute per
//                                 queued message (nested ipc frame, below)
//                                 and `truncated` = how many were left out
//   show   id                     reply ok + one `message` + `headers` (the
//                                 message's header section, at most 64 KiB)
//   flush  [domain [subdomains]]  retry every deferred message now; with
//                                 `domain`, only those with a recipient not
//                                 yet done in that domain (and, when
//                                 `subdomains` = yes, in its subdomains:
//                                 ETRN @domain, RFC 1985 §5.3); reply ok +
//                                 `count` = messages retried
//   hold | release | delete | requeue   id (a queue id, or "all")
//                                 reply ok + `count` = messages affected
// Replies: status=ok or status=error + error (see ipc::ok_reply).
// list and show are answered to any local user (like Postfix's mailq);
// the others only to root and the mail_owner, checked with SO_PEERCRED.
//
// A `message` frame: id, folder (incoming|active|deferred|hold|maildrop|
// corrupt), size, arrival (Unix seconds), sender, then per recipient one
// `recipient` nested frame: address, state (pending|sent|deferred|bounced|
// expanded), dsn, reason; plus `next_attempt` (Unix seconds, 0 = now).

enum class Op { wakeup, list, show, flush, hold, release, remove, requeue };
std::string_view op_name(Op op);  // remove is "delete" on the wire
std::optional<Op> parse_op(std::string_view name);
bool is_mutating(Op op);

struct RecipientInfo {
    std::string address, state, dsn, reason;
};

struct MessageInfo {
    std::string id, folder;
    uint64_t size = 0;
    int64_t arrival = 0;
    std::string sender;
    std::vector<RecipientInfo> recipients;
    int64_t next_attempt = 0;
};

struct Listing {
    std::vector<MessageInfo> messages;
    uint64_t truncated = 0;
};

// Client side.
ipc::Frame request(Op op, std::string_view id = {});
// flush for one domain (ETRN, `facteur queue flush DOMAIN`).
ipc::Frame flush_request(std::string_view domain, bool subdomains);
// What a flush domain may be: a DNS name (letters, digits, '-', '_', dots
// between labels), at most 255 bytes. Case does not matter.
bool valid_flush_domain(std::string_view domain);
// Whether `address`'s domain (after its last '@') is `domain`, or one of
// its subdomains when `subdomains` is set; case-insensitive.
bool address_in_domain(std::string_view address, std::string_view domain, bool subdomains);
// Blocking: connects to qmgr_socket, sends `request`, returns the reply
// frame (status not checked: the decoders below do that). When nothing
// listens on the socket the error reads "qmgr is not running (...)".
Result<ipc::Frame> call(const std::string& socket_path, const ipc::Frame& request,
                        std::chrono::milliseconds timeout = std::chrono::seconds(30));
// True when the socket file is missing or refuses connections: qmgr is not
// running (as opposed to a permission problem or a timeout).
bool not_running(const std::string& socket_path);
Result<Listing> decode_list_reply(const ipc::Frame& reply);
Result<std::pair<MessageInfo, std::string>> decode_show_reply(const ipc::Frame& reply);  // message, headers
Result<uint64_t> decode_count_reply(const ipc::Frame& reply);

// Server side (qmgr).
// A request checked for qmgr: op known; show needs a queue id; hold,
// release, delete and requeue need a queue id or "all"; the other ops take
// no id. Errors are meant for error_reply.
struct Request {
    Op op = Op::wakeup;
    std::string id;  // a queue id, "all", or empty
    std::string domain;  // flush: lower-cased; empty = every deferred message
    bool subdomains = false;
};
Result<Request> decode_request(const ipc::Frame& request);
inline constexpr size_t kMaxHeaders = 64 * 1024;  // `headers` in a show reply
std::string encode_message(const MessageInfo& message);  // the nested frame's bytes
Result<MessageInfo> decode_message(std::string_view bytes);
ipc::Frame list_reply(const Listing& listing);
ipc::Frame show_reply(const MessageInfo& message, std::string_view headers);
ipc::Frame count_reply(uint64_t count);

}  // namespace facteur::queue_control
