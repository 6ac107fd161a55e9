// Unit tests for libmail/ipc: the frame codec (including hostile input),
// the blocking Client, the async Server and the AsyncClient.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/test_support.hpp"
#include "libmail/event.hpp"
#include "libmail/ipc.hpp"

using namespace facteur;
using test::TempDir;
using test::run_until_stopped;
using namespace std::chrono_literals;

namespace {

std::string u32(uint32_t value) {
    std::string out;
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((value >> shift) & 0xff);
    return out;
}

// A frame built by hand from a body (version byte onwards).
std::string raw_frame(const std::string& body) { return u32(static_cast<uint32_t>(body.size())) + body; }

ipc::DecodeStatus decode_all(std::string_view data, ipc::Frame& frame, size_t& consumed, std::string& error) {
    return ipc::decode(data, frame, consumed, error);
}

bool send_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0) return false;
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

// Reads whole frames from a blocking socket (test client side).
std::vector<ipc::Frame> read_frames(int fd, size_t count) {
    std::vector<ipc::Frame> frames;
    std::string buffer;
    char chunk[4096];
    while (frames.size() < count) {
        ipc::Frame frame;
        size_t consumed = 0;
        std::string error;
        auto status = ipc::decode(buffer, frame, consumed, error);
        if (status == ipc::DecodeStatus::complete) {
            frames.push_back(frame);
            buffer.erase(0, consumed);
            continue;
        }
        if (status == ipc::DecodeStatus::error) break;
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) break;
        buffer.append(chunk, static_cast<size_t>(n));
    }
    return frames;
}

}  // namespace

TEST_CASE("frames round-trip binary names and values") {
    ipc::Frame frame;
    std::string nasty("a\r\nb\0c\nRCPT TO:<x>\r\n", 20);
    frame.add("request", "lookup").add("address", nasty).add("empty", "").add("rcpt", "one").add("rcpt", "two");
    frame.add(std::string("bin\0name", 8), std::string(1, '\0'));
    std::string wire = ipc::encode(frame);

    ipc::Frame decoded;
    size_t consumed = 0;
    std::string error;
    REQUIRE(decode_all(wire, decoded, consumed, error) == ipc::DecodeStatus::complete);
    CHECK(consumed == wire.size());
    CHECK(decoded.attributes == frame.attributes);
    CHECK(decoded.get("address") == std::optional<std::string_view>(nasty));
    CHECK(decoded.get("empty") == std::optional<std::string_view>(""));
    CHECK(decoded.get("rcpt") == std::optional<std::string_view>("one"));
    CHECK(decoded.get_all("rcpt") == std::vector<std::string_view>{"one", "two"});
    CHECK_FALSE(decoded.get("missing").has_value());
    CHECK(decoded.get_all("missing").empty());
    CHECK(decoded.get(std::string_view("bin\0name", 8)) == std::optional<std::string_view>(std::string_view("\0", 1)));

    // The documented wire layout, byte for byte.
    ipc::Frame small;
    small.add("k", "v");
    CHECK(ipc::encode(small) == u32(11) + "\x01" + u32(1) + "k" + u32(1) + "v");
    // An empty frame is just the version byte.
    CHECK(ipc::encode(ipc::Frame{}) == u32(1) + "\x01");
    REQUIRE(decode_all(ipc::encode(ipc::Frame{}), decoded, consumed, error) == ipc::DecodeStatus::complete);
    CHECK(decoded.attributes.empty());
}

TEST_CASE("every truncation of a frame needs more, and frames are taken one at a time") {
    ipc::Frame frame;
    frame.add("name", "value\r\n").add("other", std::string(300, 'x'));
    std::string wire = ipc::encode(frame);
    for (size_t length = 0; length < wire.size(); ++length) {
        ipc::Frame out;
        size_t consumed = 0;
        std::string error;
        INFO("prefix length " << length);
        CHECK(decode_all(std::string_view(wire).substr(0, length), out, consumed, error) ==
              ipc::DecodeStatus::need_more);
    }
    ipc::Frame second;
    second.add("n", "2");
    std::string two = wire + ipc::encode(second);
    ipc::Frame out;
    size_t consumed = 0;
    std::string error;
    REQUIRE(decode_all(two, out, consumed, error) == ipc::DecodeStatus::complete);
    CHECK(consumed == wire.size());
    CHECK(out.attributes == frame.attributes);
    REQUIRE(decode_all(std::string_view(two).substr(consumed), out, consumed, error) == ipc::DecodeStatus::complete);
    CHECK(out.get("n") == std::optional<std::string_view>("2"));
}

TEST_CASE("hostile frames are errors, never crashes or huge allocations") {
    const std::string v = "\x01";
    struct Case {
        const char* what;
        std::string data;
    };
    std::vector<Case> cases = {
        {"frame length 0xFFFFFFFF", u32(0xFFFFFFFF) + v},
        {"frame length just over the limit", u32((1 << 20) + 1) + v},
        {"frame length zero", u32(0)},
        {"unknown version", raw_frame("\x02")},
        {"version zero", raw_frame(std::string(1, '\0'))},
        {"name length 0xFFFFFFFF", raw_frame(v + u32(0xFFFFFFFF) + "abc")},
        {"name longer than the frame", raw_frame(v + u32(10) + "abc")},
        {"empty name", raw_frame(v + u32(0) + u32(1) + "x")},
        {"name of 257 bytes", raw_frame(v + u32(257) + std::string(257, 'n') + u32(0))},
        {"value length 0xFFFFFFFF", raw_frame(v + u32(1) + "k" + u32(0xFFFFFFFF) + "v")},
        {"value longer than the frame", raw_frame(v + u32(1) + "k" + u32(5) + "v")},
        {"truncated name length", raw_frame(v + std::string("\0\0", 2))},
        {"missing value length", raw_frame(v + u32(1) + "k")},
        {"truncated value length", raw_frame(v + u32(1) + "k" + std::string("\0", 1))},
    };
    for (const auto& c : cases) {
        ipc::Frame out;
        size_t consumed = 0;
        std::string error;
        INFO(c.what);
        CHECK(decode_all(c.data, out, consumed, error) == ipc::DecodeStatus::error);
        CHECK_FALSE(error.empty());
    }
    // A name of exactly 256 bytes is fine.
    ipc::Frame longest;
    longest.add(std::string(256, 'n'), "v");
    ipc::Frame out;
    size_t consumed = 0;
    std::string error;
    CHECK(decode_all(ipc::encode(longest), out, consumed, error) == ipc::DecodeStatus::complete);
    // The limit is the caller's to choose.
    ipc::Frame big;
    big.add("blob", std::string(2000, 'b'));
    CHECK(ipc::decode(ipc::encode(big), out, consumed, error, 1000) == ipc::DecodeStatus::error);
    CHECK(ipc::decode(ipc::encode(big), out, consumed, error, 4000) == ipc::DecodeStatus::complete);
}

TEST_CASE("peer_credentials reads SO_PEERCRED") {
    int pair[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    UniqueFd a(pair[0]), b(pair[1]);
    auto credentials = ipc::peer_credentials(a.get());
    REQUIRE(credentials.ok());
    CHECK(credentials->pid == getpid());
    CHECK(credentials->uid == getuid());
    CHECK(credentials->gid == getgid());
    CHECK_FALSE(ipc::peer_credentials(-1).ok());
}

namespace {

// A Server on a temp socket whose handler echoes the request plus the peer uid.
struct EchoFixture {
    TempDir dir;
    std::string path = dir.path + "/ipc.sock";
    facteur::event::Loop loop;
    std::unique_ptr<ipc::Server> server;
    int requests = 0;

    explicit EchoFixture(ipc::Server::PeerCheck check = {}) {
        auto fd = facteur::event::listen_unix(path, 0600);
        REQUIRE(fd.ok());
        server = std::make_unique<ipc::Server>(
            loop, std::move(fd).value(),
            [this](const ipc::Frame& request, const ipc::PeerCredentials& peer, ipc::Server::Responder respond) {
                ++requests;
                ipc::Frame reply = request;
                reply.add("uid", std::to_string(peer.uid));
                respond(reply);
            },
            std::move(check));
    }
};

}  // namespace

TEST_CASE("the blocking Client talks to the Server") {
    EchoFixture fixture;
    std::vector<Result<ipc::Frame>> replies;
    std::thread client([&] {
        auto connection = ipc::Client::connect(fixture.path, 5s);
        if (connection.ok()) {
            for (int i = 0; i < 3; ++i) {
                ipc::Frame request;
                request.add("n", std::to_string(i)).add("data", std::string("\r\n\0", 3));
                replies.push_back(connection->call(request));
            }
            ipc::Frame big;
            big.add("blob", std::string(500000, 'q'));
            replies.push_back(connection->call(big));
        }
        fixture.loop.stop();
    });
    bool stopped = run_until_stopped(fixture.loop);
    client.join();
    REQUIRE(stopped);
    REQUIRE(replies.size() == 4);
    for (int i = 0; i < 3; ++i) {
        REQUIRE(replies[i].ok());
        CHECK(replies[i]->get("n") == std::optional<std::string_view>(std::to_string(i)));
        CHECK(replies[i]->get("data") == std::optional<std::string_view>(std::string_view("\r\n\0", 3)));
        CHECK(replies[i]->get("uid") == std::optional<std::string_view>(std::to_string(getuid())));
    }
    REQUIRE(replies[3].ok());
    CHECK(replies[3]->get("blob")->size() == 500000);
    CHECK(fixture.requests == 4);
}

TEST_CASE("Client::connect fails cleanly when nobody listens") {
    TempDir dir;
    auto client = ipc::Client::connect(dir.path + "/none", 200ms);
    REQUIRE_FALSE(client.ok());
    CHECK_THAT(client.error(), Catch::Contains("connect"));
}

TEST_CASE("a Client call times out when the server never answers, then stays failed") {
    TempDir dir;
    std::string path = dir.path + "/silent";
    auto listening = facteur::event::listen_unix(path, 0600);
    REQUIRE(listening.ok());
    // Nobody accepts: the connection sits in the backlog and no reply comes.
    auto client = ipc::Client::connect(path, 200ms);
    REQUIRE(client.ok());
    auto started = std::chrono::steady_clock::now();
    auto reply = client->call(ipc::Frame{});
    REQUIRE_FALSE(reply.ok());
    CHECK_THAT(reply.error(), Catch::Contains("timed out"));
    CHECK(std::chrono::steady_clock::now() - started >= 190ms);
    auto again = client->call(ipc::Frame{});
    REQUIRE_FALSE(again.ok());
    CHECK_THAT(again.error(), Catch::Contains("no longer usable"));
}

TEST_CASE("replies leave in request order even when the handler answers out of order") {
    TempDir dir;
    std::string path = dir.path + "/ipc.sock";
    facteur::event::Loop loop;
    facteur::event::WorkerPool pool(loop, 4);
    auto fd = facteur::event::listen_unix(path, 0600);
    REQUIRE(fd.ok());
    ipc::Server server(loop, std::move(fd).value(),
                       [&](const ipc::Frame& request, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
                           int n = std::stoi(std::string(request.get("n").value_or("0")));
                           // Later requests finish first.
                           pool.submit<int>(
                               [n] {
                                   std::this_thread::sleep_for(std::chrono::milliseconds(5 * (10 - n)));
                                   return n;
                               },
                               [respond](int value) {
                                   ipc::Frame reply;
                                   reply.add("n", std::to_string(value));
                                   respond(reply);
                               });
                       });
    std::vector<ipc::Frame> replies;
    std::thread client([&] {
        auto sock = facteur::event::connect_unix(path);
        if (sock) {
            std::string batch;
            for (int i = 0; i < 10; ++i) batch += ipc::encode(ipc::Frame{}.add("n", std::to_string(i)));
            send_all(sock->get(), batch);
            replies = read_frames(sock->get(), 10);
        }
        loop.stop();
    });
    bool stopped = run_until_stopped(loop);
    client.join();
    REQUIRE(stopped);
    REQUIRE(replies.size() == 10);
    for (int i = 0; i < 10; ++i) CHECK(replies[i].get("n") == std::optional<std::string_view>(std::to_string(i)));
}

TEST_CASE("a client pipelining far more than the limit still gets every reply in order") {
    TempDir dir;
    std::string path = dir.path + "/ipc.sock";
    facteur::event::Loop loop;
    std::vector<std::pair<int, ipc::Server::Responder>> waiting;
    facteur::event::Timer answer(loop, [&] {
        // Answer everything collected so far, newest first.
        auto batch = std::move(waiting);
        waiting.clear();
        for (auto it = batch.rbegin(); it != batch.rend(); ++it) it->second(ipc::Frame{}.add("n", std::to_string(it->first)));
    });
    size_t most_waiting = 0;
    auto fd = facteur::event::listen_unix(path, 0600);
    REQUIRE(fd.ok());
    ipc::Server server(loop, std::move(fd).value(),
                       [&](const ipc::Frame& request, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
                           waiting.emplace_back(std::stoi(std::string(*request.get("n"))), std::move(respond));
                           most_waiting = std::max(most_waiting, waiting.size());
                           answer.start(2ms);
                       });
    const int total = 500;
    std::vector<ipc::Frame> replies;
    std::thread client([&] {
        auto sock = facteur::event::connect_unix(path);
        if (sock) {
            std::thread writer([&] {
                std::string batch;
                for (int i = 0; i < total; ++i) batch += ipc::encode(ipc::Frame{}.add("n", std::to_string(i)));
                send_all(sock->get(), batch);
            });
            replies = read_frames(sock->get(), total);
            writer.join();
        }
        loop.stop();
    });
    bool stopped = run_until_stopped(loop);
    client.join();
    REQUIRE(stopped);
    REQUIRE(replies.size() == total);
    bool in_order = true;
    for (int i = 0; i < total; ++i)
        if (replies[i].get("n") != std::optional<std::string_view>(std::to_string(i))) in_order = false;
    CHECK(in_order);
    CHECK(most_waiting <= ipc::Server::kMaxPipelined);
}

TEST_CASE("a refused peer is disconnected without reaching the handler") {
    EchoFixture fixture([](const ipc::PeerCredentials& peer) { return peer.uid == getuid() + 1; });
    Result<ipc::Frame> reply = make_error("not called");
    std::thread client([&] {
        auto connection = ipc::Client::connect(fixture.path, 5s);
        if (connection.ok()) reply = connection->call(ipc::Frame{}.add("q", "1"));
        fixture.loop.stop();
    });
    bool stopped = run_until_stopped(fixture.loop);
    client.join();
    REQUIRE(stopped);
    REQUIRE_FALSE(reply.ok());
    CHECK_THAT(reply.error(), Catch::Contains("closed") || Catch::Contains("reset") || Catch::Contains("pipe"));
    CHECK(fixture.requests == 0);
}

TEST_CASE("the server survives clients sending garbage and keeps serving") {
    EchoFixture fixture;
    std::string garbage_result;
    Result<ipc::Frame> good = make_error("not called");
    std::thread client([&] {
        for (const std::string& garbage : {std::string("GET / HTTP/1.0\r\n\r\n"), u32(0xFFFFFFFF) + "xxxx",
                                           raw_frame("\x07"), raw_frame(std::string("\x01") + u32(0) + u32(0))}) {
            auto sock = facteur::event::connect_unix(fixture.path);
            if (!sock) continue;
            send_all(sock->get(), garbage);
            char c;
            // The server hangs up on us.
            garbage_result += recv(sock->get(), &c, 1, 0) <= 0 ? "closed;" : "answered;";
        }
        {
            // A client that connects, sends half a frame and vanishes.
            auto sock = facteur::event::connect_unix(fixture.path);
            if (sock) send_all(sock->get(), u32(100) + "\x01");
        }
        auto connection = ipc::Client::connect(fixture.path, 5s);
        if (connection.ok()) good = connection->call(ipc::Frame{}.add("still", "there"));
        fixture.loop.stop();
    });
    bool stopped = run_until_stopped(fixture.loop);
    client.join();
    REQUIRE(stopped);
    CHECK(garbage_result == "closed;closed;closed;closed;");
    REQUIRE(good.ok());
    CHECK(good->get("still") == std::optional<std::string_view>("there"));
}

TEST_CASE("a responder called after the client left is a no-op, a dropped one closes") {
    TempDir dir;
    std::string path = dir.path + "/ipc.sock";
    facteur::event::Loop loop;
    std::vector<ipc::Server::Responder> kept;
    auto fd = facteur::event::listen_unix(path, 0600);
    REQUIRE(fd.ok());
    auto server = std::make_unique<ipc::Server>(
        loop, std::move(fd).value(),
        [&](const ipc::Frame& request, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
            // "keep" requests are answered much later; "drop" never.
            if (request.get("mode") == std::optional<std::string_view>("keep")) kept.push_back(std::move(respond));
        });
    bool dropped_closed = false;
    std::thread client([&] {
        {
            auto sock = facteur::event::connect_unix(path);
            if (sock) send_all(sock->get(), ipc::encode(ipc::Frame{}.add("mode", "keep")));
            std::this_thread::sleep_for(50ms);
        }  // Gone before the reply.
        {
            auto sock = facteur::event::connect_unix(path);
            if (sock) {
                send_all(sock->get(), ipc::encode(ipc::Frame{}.add("mode", "drop")));
                char c;
                dropped_closed = recv(sock->get(), &c, 1, 0) == 0;
            }
        }
        std::this_thread::sleep_for(50ms);
        loop.stop();
    });
    bool stopped = run_until_stopped(loop);
    client.join();
    REQUIRE(stopped);
    CHECK(dropped_closed);
    REQUIRE(kept.size() == 1);
    kept[0](ipc::Frame{}.add("late", "reply"));  // Client gone: nothing happens.
    kept[0](ipc::Frame{});                       // A second call is ignored too.
    server.reset();
    kept[0](ipc::Frame{});  // Even with the server gone.
}

TEST_CASE("AsyncClient calls a Server on the same loop, in order, and reconnects") {
    TempDir dir;
    std::string path = dir.path + "/ipc.sock";
    facteur::event::Loop loop;
    int served = 0;
    auto make_server = [&] {
        auto fd = facteur::event::listen_unix(path, 0600);
        REQUIRE(fd.ok());
        return std::make_unique<ipc::Server>(
            loop, std::move(fd).value(),
            [&](const ipc::Frame& request, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
                ++served;
                respond(ipc::Frame{}.add("echo", std::string(request.get("q").value_or(""))));
            });
    };
    auto server = make_server();
    ipc::AsyncClient client(loop, path);

    std::vector<std::string> answers;
    for (int i = 0; i < 5; ++i) {
        client.call(ipc::Frame{}.add("q", std::to_string(i)), [&, i](Result<ipc::Frame> reply) {
            answers.push_back(reply.ok() ? std::string(reply->get("echo").value_or("?")) : "error: " + reply.error());
            if (i == 4) loop.stop();
        });
    }
    CHECK(client.in_flight() == 5);
    REQUIRE(run_until_stopped(loop));
    CHECK(answers == std::vector<std::string>{"0", "1", "2", "3", "4"});
    CHECK(client.in_flight() == 0);

    // The server goes away: a call fails (asynchronously, never inside call()).
    server.reset();
    std::optional<std::string> failure;
    bool returned = false;
    client.call(ipc::Frame{}.add("q", "lost"), [&](Result<ipc::Frame> reply) {
        CHECK(returned);
        failure = reply.ok() ? "unexpected success" : reply.error();
        loop.stop();
    });
    returned = true;
    REQUIRE(run_until_stopped(loop));
    REQUIRE(failure.has_value());
    CHECK_FALSE(failure->empty());

    // A new server on the same path: the next call reconnects.
    server = make_server();
    std::string again;
    client.call(ipc::Frame{}.add("q", "back"), [&](Result<ipc::Frame> reply) {
        again = reply.ok() ? std::string(reply->get("echo").value_or("?")) : reply.error();
        loop.stop();
    });
    REQUIRE(run_until_stopped(loop));
    CHECK(again == "back");
}

TEST_CASE("AsyncClient fails in-flight calls on connection loss and on timeout") {
    TempDir dir;
    std::string path = dir.path + "/ipc.sock";
    facteur::event::Loop loop;
    std::vector<ipc::Server::Responder> held;
    auto fd = facteur::event::listen_unix(path, 0600);
    REQUIRE(fd.ok());
    auto server = std::make_unique<ipc::Server>(
        loop, std::move(fd).value(),
        [&](const ipc::Frame&, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
            held.push_back(std::move(respond));
        });

    SECTION("timeout") {
        ipc::AsyncClient client(loop, path, 100ms);
        std::vector<std::string> errors;
        auto started = std::chrono::steady_clock::now();
        for (int i = 0; i < 3; ++i)
            client.call(ipc::Frame{}, [&](Result<ipc::Frame> reply) {
                errors.push_back(reply.ok() ? "ok" : reply.error());
                if (errors.size() == 3) loop.stop();
            });
        REQUIRE(run_until_stopped(loop));
        REQUIRE(errors.size() == 3);
        for (const auto& error : errors) CHECK_THAT(error, Catch::Contains("timed out"));
        CHECK(std::chrono::steady_clock::now() - started >= 90ms);
        // Late replies to the abandoned connection go nowhere.
        for (auto& respond : held) respond(ipc::Frame{});
    }
    SECTION("connection loss") {
        ipc::AsyncClient client(loop, path);
        std::vector<std::string> errors;
        for (int i = 0; i < 2; ++i)
            client.call(ipc::Frame{}, [&](Result<ipc::Frame> reply) {
                errors.push_back(reply.ok() ? "ok" : reply.error());
                if (errors.size() == 2) loop.stop();
            });
        facteur::event::Timer kill(loop, [&] { server.reset(); });
        kill.start(50ms);
        REQUIRE(run_until_stopped(loop));
        REQUIRE(errors.size() == 2);
        for (const auto& error : errors) CHECK_THAT(error, Catch::Contains("lost"));
        CHECK(client.in_flight() == 0);
    }
    SECTION("destroying the client with calls in flight runs none of them") {
        bool called = false;
        {
            ipc::AsyncClient client(loop, path);
            client.call(ipc::Frame{}, [&](Result<ipc::Frame>) { called = true; });
            facteur::event::Timer stop(loop, [&] { loop.stop(); });
            stop.start(50ms);
            REQUIRE(run_until_stopped(loop));
        }
        for (auto& respond : held) respond(ipc::Frame{});
        facteur::event::Timer stop(loop, [&] { loop.stop(); });
        stop.start(50ms);
        REQUIRE(run_until_stopped(loop));
        CHECK_FALSE(called);
    }
}
