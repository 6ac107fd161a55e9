// Password checks. The user lookup runs on the loop thread: SQLite answers a
// primary-key lookup in microseconds and the connection is not shared with
// worker threads; the expensive part, hashing, runs on the worker pool.
#include "authd/password_checker.hpp"

#include "libmail/log.hpp"
#include "libmail/password.hpp"
#include "libmail/panic.hpp"
#include "libmail/secret.hpp"

namespace facteur::authd {

CheckRequest::~CheckRequest() {
    secret::wipe(password);
}

PasswordChecker::PasswordChecker(event::Loop& loop, event::WorkerPool& pool, directory::UserDatabase& database,
                                 Throttle& throttle)
    : loop_(loop), pool_(pool), database_(database), throttle_(throttle) {
    // Unknown users are verified against this yescrypt hash, so they cost
    // the same time as known ones and cannot be told apart by timing.
    auto dummy = auth::hash_password("facteur-dummy-password-never-matches");
    if (!dummy) panic("cannot compute the dummy password hash: " + dummy.error());
    dummy_hash_ = std::move(*dummy);
}

PasswordChecker::~PasswordChecker() { *alive_ = false; }

void PasswordChecker::check(CheckRequest request_value, std::function<void(CheckResult)> done) {
    auto request = std::make_shared<CheckRequest>(std::move(request_value));
    std::string user = directory::lowercase(request->user);
    if (throttle_.locked_out(request->client_ip, user)) {
        log::info("service={} rip={} user=<{}> mech={} result=tempfail reason=\"locked out\"",
                  log::printable(request->service), log::printable(request->client_ip), log::printable(user),
                  request->mechanism);
        done(CheckResult{auth_lookup::Outcome::tempfail, user, kLockedOutReason});
        return;
    }

    Account account = Account::unknown;
    std::string canonical = user;
    std::string stored = dummy_hash_;
    std::optional<std::string> apop_secret;
    // A name that is not local@domain cannot be a user: it fails like an
    // unknown one (same answer, same cost), it is not a server problem.
    if (directory::split_address(user)) {
        auto found = database_.find_user(user);
        if (!found) {
            log::error("service={} user=<{}> result=tempfail reason=\"database: {}\"",
                       log::printable(request->service), log::printable(user), found.error());
            done(CheckResult{auth_lookup::Outcome::tempfail, user, "temporary server failure"});
            return;
        }
        if (found->has_value()) {
            const directory::User& record = **found;
            canonical = record.address();
            account = record.enabled ? Account::known : Account::disabled;
            if (record.enabled) {
                stored = record.password_hash;
                apop_secret = record.apop_secret;
            }
        }
    }

    std::weak_ptr<bool> alive = alive_;
    pool_.submit<bool>(
        [request, stored, apop_secret]() -> bool {
            if (request->apop) {
                // Users without an APOP secret cannot use APOP (RFC 1939 §7);
                // the dummy comparison keeps the timing alike.
                std::string secret = apop_secret.value_or("facteur-dummy-apop-secret");
                bool matched = auth::verify_apop(request->apop_timestamp, secret, request->apop_digest);
                secret::wipe(secret);
                return matched && apop_secret.has_value();
            }
            return auth::verify_password(request->password, stored);
        },
        [this, alive, request, account, canonical, stored, done](bool matched) {
            if (alive.expired() || !*alive.lock()) return;
            finish(request, matched, account, canonical, stored, done);
        });
}

void PasswordChecker::finish(const std::shared_ptr<CheckRequest>& request, bool matched, Account account,
                             const std::string& canonical, const std::string& stored_hash,
                             std::function<void(CheckResult)> done) {
    if (matched && account == Account::known) {
        throttle_.record_success(request->client_ip, canonical);
        log::info("service={} rip={} user=<{}> mech={} result=ok", log::printable(request->service),
                  log::printable(request->client_ip), log::printable(canonical), request->mechanism);
        // Imported hashes (sha512-crypt, {SSHA512} ...) become yescrypt on the
        // first good login, computed off the loop.
        if (!request->apop && auth::needs_rehash(stored_hash) && upgrading_.insert(canonical).second) {
            std::weak_ptr<bool> alive = alive_;
            pool_.submit<Result<std::string>>(
                [request] { return auth::hash_password(request->password); },
                [this, alive, canonical, stored_hash](Result<std::string> fresh) {
                    if (alive.expired() || !*alive.lock()) return;
                    upgrading_.erase(canonical);
                    upgrade_hash(canonical, stored_hash, fresh);
                });
        }
        done(CheckResult{auth_lookup::Outcome::ok, canonical, ""});
        return;
    }

    const char* why = account == Account::known      ? "password mismatch"
                      : account == Account::disabled ? "disabled user"
                                                     : "unknown user";
    auto penalty = throttle_.record_failure(request->client_ip, canonical);
    log::info("service={} rip={} user=<{}> mech={} result=fail reason=\"{}\" failures={} delay={}ms",
              log::printable(request->service), log::printable(request->client_ip), log::printable(canonical),
              request->mechanism, why, penalty.failures, penalty.delay.count());
    if (penalty.lockout_started)
        log::warning("service={} rip={} user=<{}> lockout started after {} authentication failures",
                     log::printable(request->service), log::printable(request->client_ip), log::printable(canonical),
                     penalty.failures);
    // Unknown user, disabled user and wrong password get the same answer.
    answer_later(penalty.delay, CheckResult{auth_lookup::Outcome::fail, canonical, kFailedReason}, std::move(done));
}

void PasswordChecker::upgrade_hash(const std::string& address, const std::string& verified_hash,
                                   const Result<std::string>& fresh) {
    if (!fresh) {
        log::warning("user=<{}> password hash upgrade failed: {}", log::printable(address), fresh.error());
        return;
    }
    // The admin may have set a new password while we hashed: only replace
    // the very hash the password was verified against.
    auto current = database_.find_user(address);
    if (!current || !current->has_value() || (*current)->password_hash != verified_hash) return;
    auto stored = database_.set_password(address, *fresh);
    if (stored) log::info("user=<{}> password hash upgraded to yescrypt", log::printable(address));
    else log::warning("user=<{}> password hash upgrade failed: {}", log::printable(address), stored.error());
}

void PasswordChecker::answer_later(std::chrono::milliseconds delay, CheckResult result,
                                   std::function<void(CheckResult)> done) {
    if (delay.count() <= 0) {
        done(std::move(result));
        return;
    }
    // The answer is held on a timer; the connection keeps serving its other
    // requests meanwhile. A Timer may be destroyed inside its own callback.
    uint64_t id = next_timer_++;
    auto timer = std::make_unique<event::Timer>(loop_, [this, id, result = std::move(result), done = std::move(done)]() mutable {
        auto answer = std::move(result);
        auto callback = std::move(done);
        delayed_.erase(id);  // destroys this lambda: only locals from here on
        callback(std::move(answer));
    });
    timer->start(delay);
    delayed_[id] = std::move(timer);
}

}  // namespace facteur::authd
