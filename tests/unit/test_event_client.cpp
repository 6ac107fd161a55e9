// event::connect_tcp: outgoing non-blocking connects with a source address,
// errors reported on the loop, cancellation by destroying the handle.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "libmail/event.hpp"
#include "tests/unit/test_support.hpp"

using namespace facteur;

namespace {

struct Attempt {
    bool called = false;
    std::optional<Result<UniqueFd>> result;
};

Attempt run_connect(event::Loop& loop, const std::string& address, uint16_t port, const std::string& bind,
                    bool* synchronous = nullptr) {
    Attempt attempt;
    bool returned = false;
    auto handle =
        event::connect_tcp(loop, address, port, bind, std::chrono::milliseconds(2000), [&](Result<UniqueFd> fd) {
            if (synchronous != nullptr) *synchronous = !returned;
            attempt.called = true;
            attempt.result.emplace(std::move(fd));
            loop.stop();
        });
    returned = true;
    REQUIRE(test::run_until_stopped(loop, std::chrono::seconds(5)));
    return attempt;
}

uint16_t unused_port() {
    auto fd = event::listen_tcp("127.0.0.1", 0);
    REQUIRE(fd.ok());
    auto port = event::local_port(fd->get());
    REQUIRE(port.ok());
    return *port;  // closed on return: nobody listens there now
}

}  // namespace

TEST_CASE("connect_tcp reaches a listener, from the requested source address") {
    event::Loop loop;
    auto listening = event::listen_tcp("127.0.0.1", 0);
    REQUIRE(listening.ok());
    uint16_t port = *event::local_port(listening->get());
    bool synchronous = true;
    Attempt attempt = run_connect(loop, "127.0.0.1", port, "127.0.0.1", &synchronous);
    REQUIRE(attempt.called);
    CHECK_FALSE(synchronous);
    REQUIRE(attempt.result->ok());
    auto connection = event::Connection::create(loop, std::move(attempt.result->value()));
    CHECK(connection->peer_address() == "127.0.0.1");
    CHECK(connection->peer_port() == port);
    CHECK(connection->local_address() == "127.0.0.1");
}

TEST_CASE("connect_tcp over IPv6 loopback") {
    auto listening = event::listen_tcp("::1", 0);
    if (!listening.ok()) {
        WARN("no IPv6 loopback here: " << listening.error());
        return;
    }
    event::Loop loop;
    uint16_t port = *event::local_port(listening->get());
    Attempt attempt = run_connect(loop, "[::1]", port, "::1");
    REQUIRE(attempt.result->ok());
    auto connection = event::Connection::create(loop, std::move(attempt.result->value()));
    CHECK(connection->peer_address() == "::1");
}

TEST_CASE("connect_tcp errors arrive on the loop, never inside the call") {
    event::Loop loop;
    SECTION("refused") {
        bool synchronous = true;
        Attempt attempt = run_connect(loop, "127.0.0.1", unused_port(), "", &synchronous);
        CHECK_FALSE(synchronous);
        REQUIRE_FALSE(attempt.result->ok());
        CHECK(attempt.result->error() == "Connection refused");
    }
    SECTION("not an address") {
        bool synchronous = true;
        Attempt attempt = run_connect(loop, "mx.example.test", 25, "", &synchronous);
        CHECK_FALSE(synchronous);
        REQUIRE_FALSE(attempt.result->ok());
        CHECK(attempt.result->error() == "invalid address mx.example.test");
    }
    SECTION("source address of the other family") {
        Attempt attempt = run_connect(loop, "127.0.0.1", 25, "::1");
        REQUIRE_FALSE(attempt.result->ok());
        CHECK(attempt.result->error() == "invalid source address ::1");
    }
    SECTION("source address that is not ours") {
        Attempt attempt = run_connect(loop, "127.0.0.1", 25, "192.0.2.77");
        REQUIRE_FALSE(attempt.result->ok());
        CHECK_THAT(attempt.result->error(), Catch::StartsWith("cannot bind to 192.0.2.77: "));
    }
}

TEST_CASE("destroying the connect handle cancels the callback") {
    event::Loop loop;
    bool called = false;
    auto handle = event::connect_tcp(loop, "127.0.0.1", unused_port(), "", std::chrono::milliseconds(1000),
                                     [&](Result<UniqueFd>) { called = true; });
    handle.reset();
    event::Timer stop(loop, [&] { loop.stop(); });
    stop.start(std::chrono::milliseconds(100));
    loop.run();
    CHECK_FALSE(called);
}
