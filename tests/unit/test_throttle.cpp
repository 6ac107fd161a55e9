// authd's failed-login throttle: growing delays, lockout, expiry, bound.
#include "authd/throttle.hpp"

#include <catch2/catch.hpp>

#include <string>

using facteur::authd::Throttle;
using facteur::authd::ThrottleSettings;
using namespace std::chrono_literals;

namespace {

struct FakeClock {
    Throttle::Clock::time_point now = Throttle::Clock::time_point{} + 1h;
    Throttle::Now function() {
        return [this] { return now; };
    }
};

ThrottleSettings defaults() {
    ThrottleSettings settings;
    settings.free_attempts = 3;
    settings.delay = 1000ms;
    settings.delay_max = 15000ms;
    settings.lockout_count = 10;
    settings.window = 15min;
    settings.lockout_time = 5min;
    settings.max_entries = 1000;
    return settings;
}

}  // namespace

TEST_CASE("free attempts are answered at once, then delays double up to the cap") {
    FakeClock clock;
    Throttle throttle(defaults(), clock.function());
    // failures:            1  2  3    4     5     6     7      8      9
    const long expected[] = {0, 0, 0, 1000, 2000, 4000, 8000, 15000, 15000};
    for (int i = 0; i < 9; ++i) {
        auto penalty = throttle.record_failure("192.0.2.7", "bob@example.test");
        CAPTURE(i);
        CHECK(penalty.failures == i + 1);
        CHECK(penalty.delay.count() == expected[i]);
        CHECK_FALSE(penalty.lockout_started);
        CHECK_FALSE(throttle.locked_out("192.0.2.7", "bob@example.test"));
    }
}

TEST_CASE("a huge free count or delay never overflows") {
    FakeClock clock;
    auto settings = defaults();
    settings.free_attempts = 0;
    settings.lockout_count = 100000;
    settings.delay = 60s;
    settings.delay_max = 10min;
    Throttle throttle(settings, clock.function());
    for (int i = 0; i < 200; ++i) {
        auto penalty = throttle.record_failure("192.0.2.7", "");
        CHECK(penalty.delay <= 10min);
        CHECK(penalty.delay >= 60s);
    }
}

TEST_CASE("the lockout starts at the count and ends after the lockout time") {
    FakeClock clock;
    Throttle throttle(defaults(), clock.function());
    for (int i = 0; i < 9; ++i) throttle.record_failure("192.0.2.7", "u" + std::to_string(i) + "@example.test");
    CHECK_FALSE(throttle.locked_out("192.0.2.7", "alice@example.test"));
    auto penalty = throttle.record_failure("192.0.2.7", "u9@example.test");
    CHECK(penalty.lockout_started);
    CHECK(penalty.failures == 10);
    CHECK(penalty.delay.count() == 0);  // the lockout itself answers from now on
    // The IP is locked out whoever it tries; other IPs are not.
    CHECK(throttle.locked_out("192.0.2.7", "alice@example.test"));
    CHECK_FALSE(throttle.locked_out("198.51.100.9", "alice@example.test"));

    clock.now += 5min - 1s;
    CHECK(throttle.locked_out("192.0.2.7", "alice@example.test"));
    clock.now += 1s;
    CHECK_FALSE(throttle.locked_out("192.0.2.7", "alice@example.test"));
    // The count starts afresh after a lockout.
    CHECK(throttle.record_failure("192.0.2.7", "x@example.test").failures == 1);
}

TEST_CASE("failures per user are counted across client addresses") {
    FakeClock clock;
    Throttle throttle(defaults(), clock.function());
    for (int i = 0; i < 10; ++i) throttle.record_failure("203.0.113." + std::to_string(i), "bob@example.test");
    CHECK(throttle.locked_out("198.51.100.1", "bob@example.test"));
    CHECK_FALSE(throttle.locked_out("198.51.100.1", "alice@example.test"));
}

TEST_CASE("failures older than the window are forgotten") {
    FakeClock clock;
    Throttle throttle(defaults(), clock.function());
    for (int i = 0; i < 5; ++i) throttle.record_failure("192.0.2.7", "bob@example.test");
    clock.now += 15min;
    auto penalty = throttle.record_failure("192.0.2.7", "bob@example.test");
    CHECK(penalty.failures == 1);
    CHECK(penalty.delay.count() == 0);
}

TEST_CASE("a success clears the IP's and the user's counters") {
    FakeClock clock;
    Throttle throttle(defaults(), clock.function());
    for (int i = 0; i < 6; ++i) throttle.record_failure("192.0.2.7", "bob@example.test");
    throttle.record_success("192.0.2.7", "bob@example.test");
    CHECK(throttle.entries() == 0);
    CHECK(throttle.record_failure("192.0.2.7", "bob@example.test").failures == 1);
}

TEST_CASE("an empty IP or user is not a key") {
    FakeClock clock;
    Throttle throttle(defaults(), clock.function());
    for (int i = 0; i < 20; ++i) throttle.record_failure("", "bob@example.test");
    CHECK(throttle.entries() == 1);
    CHECK(throttle.locked_out("", "bob@example.test"));
    CHECK_FALSE(throttle.locked_out("", "alice@example.test"));
}

TEST_CASE("the table is bounded: the least recently touched entries go first") {
    FakeClock clock;
    auto settings = defaults();
    settings.max_entries = 100;
    Throttle throttle(settings, clock.function());
    for (int i = 0; i < 10; ++i) throttle.record_failure("192.0.2.7", "");
    REQUIRE(throttle.locked_out("192.0.2.7", ""));
    for (int i = 0; i < 5000; ++i) {
        throttle.record_failure("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256), "");
        REQUIRE(throttle.entries() <= 100);
    }
    // The attacker's flood evicted the old entry rather than growing memory.
    CHECK_FALSE(throttle.locked_out("192.0.2.7", ""));
    CHECK(throttle.entries() == 100);
}

TEST_CASE("new settings apply to later failures") {
    FakeClock clock;
    Throttle throttle(defaults(), clock.function());
    auto settings = defaults();
    settings.free_attempts = 0;
    settings.delay = 200ms;
    throttle.set_settings(settings);
    CHECK(throttle.record_failure("192.0.2.7", "").delay == 200ms);
    CHECK(throttle.record_failure("192.0.2.7", "").delay == 400ms);
}
