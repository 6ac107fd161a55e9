// authd's lookup socket (DESIGN §4): the ipc frames other daemons use to check
// passwords, find users and resolve recipients, defined once for both sides.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/directory.hpp"
#include "libmail/event.hpp"
#include "libmail/ipc.hpp"
#include "libmail/result.hpp"

namespace facteur::auth_lookup {

// Wire protocol (one ipc frame per request, one per reply):
//   request `op` = verify  user, password, service, client_ip
//                  apop    user, timestamp, digest, service, client_ip
//                  user    user
//                  resolve address
//   reply   `result` = ok | fail | tempfail | notfound | error, `reason`;
//           verify/apop: `user` (canonical lowercase address);
//           user and resolve of a local user: `address`, `mail_path`,
//             `format`, `quota` (bytes, 0 = unlimited), `enabled` (yes|no),
//             `apop_secret` (only to privileged peers);
//           resolve: `kind` = local_user | alias | unknown_local | remote,
//             aliases one `target` per final target, in order.
// `error` answers a malformed request; `tempfail` a server-side problem.

enum class Op { verify, apop, user, resolve };
enum class Outcome { ok, fail, tempfail };

std::string_view outcome_name(Outcome outcome);

// A password check. The password is wiped when the request goes away.
struct VerifyRequest {
    std::string user, password, service, client_ip;
    VerifyRequest() = default;
    VerifyRequest(const VerifyRequest&) = default;
    VerifyRequest(VerifyRequest&&) = default;
    VerifyRequest& operator=(const VerifyRequest&) = default;
    VerifyRequest& operator=(VerifyRequest&&) = default;
    ~VerifyRequest();
};

// RFC 1939 §7 APOP: the greeting's timestamp and the client's MD5 digest;
// authd compares it with the user's secret, which never leaves authd.
struct ApopRequest {
    std::string user, timestamp, digest, service, client_ip;
};

struct VerifyReply {
    Outcome result = Outcome::fail;
    std::string user;    // canonical address when known, else as asked
    std::string reason;  // for the client; never says which half was wrong
};

struct UserInfo {
    std::string address;    // local@domain, lowercase
    std::string mail_path;  // mail_dir/domain/localpart
    std::string format;     // maildir | mbox
    uint64_t quota_bytes = 0;
    bool enabled = true;
    std::optional<std::string> apop_secret;
};

enum class RecipientKind { local_user, alias, unknown_local, remote };
std::string_view recipient_kind_name(RecipientKind kind);

struct Resolution {
    RecipientKind kind = RecipientKind::unknown_local;
    std::optional<UserInfo> user;      // local_user
    std::vector<std::string> targets;  // alias
};

// mail_dir + "/" + domain + "/" + localpart (DESIGN §3 mail store).
std::string mail_path(std::string_view mail_dir, const directory::User& user);
UserInfo user_info(const directory::User& user, std::string_view mail_dir, bool with_apop_secret);

// Client side: request encoders and reply decoders. A reply that is not
// what the protocol says is an error, never a guess.
namespace request {
ipc::Frame verify(const VerifyRequest& request);
ipc::Frame apop(const ApopRequest& request);
ipc::Frame find_user(std::string_view user);
ipc::Frame resolve(std::string_view address);
}  // namespace request

namespace reply {
Result<VerifyReply> verify(const ipc::Frame& reply);
// nullopt: no such user.
Result<std::optional<UserInfo>> find_user(const ipc::Frame& reply);
Result<Resolution> resolve(const ipc::Frame& reply);
}  // namespace reply

// Server side (authd): the same protocol read the other way.
namespace serve {
Result<Op> op(const ipc::Frame& request);
Result<VerifyRequest> verify(const ipc::Frame& request);
Result<ApopRequest> apop(const ipc::Frame& request);
// `user` for op=user, `address` for op=resolve; never empty.
Result<std::string> user(const ipc::Frame& request);
Result<std::string> address(const ipc::Frame& request);

ipc::Frame verify_reply(const VerifyReply& reply);
ipc::Frame user_reply(const std::optional<UserInfo>& user);
ipc::Frame resolve_reply(const Resolution& resolution);
// result=error (bad request) or result=tempfail (server trouble).
ipc::Frame error_reply(std::string_view reason);
ipc::Frame tempfail_reply(std::string_view reason);
}  // namespace serve

// The asynchronous client the daemons use on their event loop. Every
// callback runs on the loop; a lost or slow authd yields an error Result
// (callers answer with a temporary failure, never with success).
class Client {
public:
    Client(event::Loop& loop, std::string socket_path, std::chrono::milliseconds timeout = std::chrono::seconds(30));
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    void verify(const VerifyRequest& request, std::function<void(Result<VerifyReply>)> done);
    void verify_apop(const ApopRequest& request, std::function<void(Result<VerifyReply>)> done);
    void find_user(std::string_view user, std::function<void(Result<std::optional<UserInfo>>)> done);
    void resolve(std::string_view address, std::function<void(Result<Resolution>)> done);

private:
    ipc::AsyncClient client_;
};

}  // namespace facteur::auth_lookup
