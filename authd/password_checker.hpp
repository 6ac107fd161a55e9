// The one path every password check takes, from the SASL socket and the
// lookup socket alike: lockout check, user lookup, hash verification on the
// worker pool, throttled answers, one log line, hash upgrade.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "authd/throttle.hpp"
#include "libmail/auth_lookup.hpp"
#include "libmail/directory.hpp"
#include "libmail/event.hpp"

namespace facteur::authd {

struct CheckRequest {
    std::string user;
    std::string password;   // wiped when the request goes away
    std::string service;    // smtp, imap, pop3 ... (for the log)
    std::string client_ip;  // throttling key; may be empty (local client)
    std::string mechanism;  // PLAIN, LOGIN, APOP, lookup (for the log)
    // APOP (RFC 1939 §7): the greeting's timestamp and the client's digest;
    // the secret never leaves authd.
    bool apop = false;
    std::string apop_timestamp, apop_digest;
    CheckRequest() = default;
    CheckRequest(CheckRequest&&) = default;
    CheckRequest& operator=(CheckRequest&&) = default;
    CheckRequest(const CheckRequest&) = delete;
    CheckRequest& operator=(const CheckRequest&) = delete;
    ~CheckRequest();
};

// The answer is the lookup socket's VerifyReply: ok / fail / tempfail, the
// canonical user, and a reason fit for the client.
using CheckResult = auth_lookup::VerifyReply;

inline constexpr const char* kLockedOutReason = "too many authentication failures, try again later";
inline constexpr const char* kFailedReason = "Authentication failed";

class PasswordChecker {
public:
    PasswordChecker(event::Loop& loop, event::WorkerPool& pool, directory::UserDatabase& database, Throttle& throttle);
    ~PasswordChecker();
    PasswordChecker(const PasswordChecker&) = delete;
    PasswordChecker& operator=(const PasswordChecker&) = delete;

    // `done` runs on the loop, later (never from inside check() except for
    // an immediate lockout or database refusal), possibly after a throttle
    // delay; it does not run if the checker is destroyed first.
    void check(CheckRequest request, std::function<void(CheckResult)> done);
    size_t delayed_answers() const { return delayed_.size(); }

private:
    enum class Account { known, unknown, disabled };
    void finish(const std::shared_ptr<CheckRequest>& request, bool matched, Account account,
                const std::string& canonical, const std::string& stored_hash, std::function<void(CheckResult)> done);
    void upgrade_hash(const std::string& address, const std::string& verified_hash, const Result<std::string>& fresh);
    void answer_later(std::chrono::milliseconds delay, CheckResult result, std::function<void(CheckResult)> done);

    event::Loop& loop_;
    event::WorkerPool& pool_;
    directory::UserDatabase& database_;
    Throttle& throttle_;
    std::string dummy_hash_;
    uint64_t next_timer_ = 0;
    std::map<uint64_t, std::unique_ptr<event::Timer>> delayed_;
    std::set<std::string> upgrading_;  // users whose hash upgrade is running
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace facteur::authd
