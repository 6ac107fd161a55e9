// Failed-login accounting for authd.
#include "authd/throttle.hpp"

#include <algorithm>
#include <iterator>

namespace facteur::authd {

Throttle::Throttle(ThrottleSettings settings, Now now) : settings_(settings), now_(std::move(now)) {}

Throttle::Entry* Throttle::find(const std::string& key) {
    auto found = entries_.find(key);
    if (found == entries_.end()) return nullptr;
    Entry& entry = found->second;
    auto now = now_();
    // A lockout that ran out starts the count afresh; without one, failures
    // older than the window are forgotten.
    bool lockout_over = entry.locked_until != Clock::time_point{} && entry.locked_until <= now;
    bool window_over = entry.locked_until <= now && now - entry.first_failure >= settings_.window;
    if (lockout_over || window_over) {
        forget(key);
        return nullptr;
    }
    return &entry;
}

Throttle::Entry& Throttle::touch(const std::string& key) {
    auto found = entries_.find(key);
    if (found != entries_.end()) {
        order_.splice(order_.end(), order_, found->second.age);
        return found->second;
    }
    // Bounded: an attacker cycling through addresses evicts old entries,
    // never grows memory without limit.
    while (entries_.size() >= settings_.max_entries && !order_.empty()) {
        entries_.erase(order_.front());
        order_.pop_front();
    }
    order_.push_back(key);
    Entry& entry = entries_[key];
    entry.first_failure = now_();
    entry.age = std::prev(order_.end());
    return entry;
}

void Throttle::forget(const std::string& key) {
    auto found = entries_.find(key);
    if (found == entries_.end()) return;
    order_.erase(found->second.age);
    entries_.erase(found);
}

bool Throttle::locked_out(const std::string& ip, const std::string& user) {
    auto now = now_();
    for (const std::string& key : {"ip:" + ip, "user:" + user}) {
        if (key == "ip:" || key == "user:") continue;
        Entry* entry = find(key);
        if (entry != nullptr && entry->locked_until > now) return true;
    }
    return false;
}

Throttle::Penalty Throttle::record_failure(const std::string& ip, const std::string& user) {
    Penalty penalty;
    auto now = now_();
    for (const std::string& key : {"ip:" + ip, "user:" + user}) {
        if (key == "ip:" || key == "user:") continue;
        find(key);  // expire a stale entry first
        Entry& entry = touch(key);
        ++entry.failures;
        penalty.failures = std::max(penalty.failures, entry.failures);
        if (entry.failures >= settings_.lockout_count && entry.locked_until <= now) {
            entry.locked_until = now + settings_.lockout_time;
            penalty.lockout_started = true;
        }
    }
    int over = penalty.failures - settings_.free_attempts;
    if (over > 0 && !penalty.lockout_started) {
        // delay × 2^(over−1), capped; computed without overflow.
        auto delay = settings_.delay;
        for (int i = 1; i < over && delay < settings_.delay_max; ++i) delay *= 2;
        penalty.delay = std::min(delay, settings_.delay_max);
    }
    return penalty;
}

void Throttle::record_success(const std::string& ip, const std::string& user) {
    if (!ip.empty()) forget("ip:" + ip);
    if (!user.empty()) forget("user:" + user);
}

}  // namespace facteur::authd
