// The request qmgr sends deliverd over deliverd_socket and its reply: one
// ipc frame each way per message (DESIGN §4). Defined once for both sides.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "libmail/ipc.hpp"
#include "libmail/result.hpp"

namespace facteur::delivery {

// Wire format. Request: op=deliver, queue_id, queue_file (absolute path of
// the queue file in active/, which deliverd opens read-only), sender (may be
// empty = <>), then one `delivery` attribute per target whose value is a
// nested encoded ipc frame (ipc::encode) with:
//   recipient   the envelope address the mail is delivered for (Delivered-To)
//   kind        mailbox | pipe
//   mailbox:    user (canonical address), mail_path, format (maildir|mbox),
//               quota (decimal bytes, 0 = unlimited), folder (Maildir++
//               folder name without the leading dot, empty = INBOX)
//   pipe:       command (the alias target without its leading '|'), alias
//               (the alias address that named it)
// Reply: status=ok, then one `result` nested frame per delivery, same order:
//   outcome = sent | deferred | bounced, dsn (e.g. 2.0.0, 4.2.2, 5.2.2),
//   reason (human-readable, one line).
// A reply that is not status=ok (error_reply) means nothing was delivered.

enum class Kind { mailbox, pipe };
enum class Outcome { sent, deferred, bounced };

struct Target {
    std::string recipient;
    Kind kind = Kind::mailbox;
    std::string user, mail_path, format = "maildir", folder;
    uint64_t quota_bytes = 0;
    std::string command, alias;
};

struct Request {
    std::string queue_id;
    std::string queue_file;
    std::string sender;
    std::vector<Target> targets;
};

struct TargetResult {
    Outcome outcome = Outcome::deferred;
    std::string dsn;
    std::string reason;
};

std::string_view outcome_name(Outcome outcome);

// Shared by the protocols between daemons (delivery, relay).
bool has_control(std::string_view text);  // any byte < 0x20 or 0x7f
Result<uint64_t> parse_decimal(std::string_view text);
// One nested frame that must be exactly `data`; `what` names it in errors.
Result<ipc::Frame> decode_nested(std::string_view data, std::string_view what);
// RFC 3463 class.subject.detail whose class fits the outcome (2, 4, 5).
bool valid_dsn(std::string_view dsn, Outcome outcome);

ipc::Frame encode_request(const Request& request);
// Validates every field (kinds, formats, absolute paths, non-empty
// recipient, decimal quota); an invalid request is an error, never a guess.
Result<Request> decode_request(const ipc::Frame& frame);

ipc::Frame encode_reply(const std::vector<TargetResult>& results);
// Fails unless status=ok and exactly `expected` results are present.
Result<std::vector<TargetResult>> decode_reply(const ipc::Frame& frame, size_t expected);

}  // namespace facteur::delivery
