// Throttling of failed logins per client IP and per user: growing delays,
// then a temporary lockout (issue "authd", DESIGN §5 limits).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <string>
#include <unordered_map>

namespace facteur::authd {

struct ThrottleSettings {
    int free_attempts = 3;
    std::chrono::milliseconds delay{1000};
    std::chrono::milliseconds delay_max{15000};
    int lockout_count = 10;
    std::chrono::milliseconds window{15 * 60 * 1000};
    std::chrono::milliseconds lockout_time{5 * 60 * 1000};
    size_t max_entries = 100000;  // IPs plus users; the least recently touched go first
};

class Throttle {
public:
    using Clock = std::chrono::steady_clock;
    using Now = std::function<Clock::time_point()>;

    explicit Throttle(ThrottleSettings settings, Now now = [] { return Clock::now(); });
    void set_settings(ThrottleSettings settings) { settings_ = settings; }

    // An empty IP or user is not counted (a local client may have no IP).
    // True while the IP or the user is locked out: refuse without checking.
    // A lockout that has run out forgets that key's failures.
    bool locked_out(const std::string& ip, const std::string& user);
    // Records a failure for both keys; `failures` is the larger count.
    // Returns how long to hold the answer (none while the count is within
    // free_attempts, then delay × 2^(n−free−1) capped at delay_max, none for
    // the failure that starts a lockout), and whether it started one.
    struct Penalty {
        std::chrono::milliseconds delay{0};
        int failures = 0;
        bool lockout_started = false;
    };
    Penalty record_failure(const std::string& ip, const std::string& user);
    void record_success(const std::string& ip, const std::string& user);
    size_t entries() const { return entries_.size(); }

private:
    struct Entry {
        int failures = 0;
        Clock::time_point first_failure;
        Clock::time_point locked_until;
        std::list<std::string>::iterator age;
    };
    Entry* find(const std::string& key);
    Entry& touch(const std::string& key);
    void forget(const std::string& key);

    ThrottleSettings settings_;
    Now now_;
    std::unordered_map<std::string, Entry> entries_;
    std::list<std::string> order_;  // least recently touched first
};

}  // namespace facteur::authd
