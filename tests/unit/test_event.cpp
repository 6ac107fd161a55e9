// Unit tests for libmail/event: timers, signals, listeners, connections
// (lines, limits, timeouts, STARTTLS) and the worker pool.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/test_support.hpp"
#include "libmail/event.hpp"

using namespace facteur;
using test::TempDir;
using test::run_until_stopped;
using namespace std::chrono_literals;

namespace {

// libevent finalizes freed bufferevents (closing their fds) on a later loop
// iteration: give it one.
void settle(facteur::event::Loop& loop) {
    facteur::event::Timer stop(loop, [&] { loop.stop(); });
    stop.start(20ms);
    loop.run();
}

UniqueFd connect_tcp_blocking(const char* host, uint16_t port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    inet_pton(AF_INET, host, &address.sin_addr);
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return UniqueFd();
    return fd;
}

bool send_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0) return false;
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

// Reads one byte at a time up to and including "\n" (so nothing beyond the
// line is consumed: the STARTTLS test depends on it).
std::string read_line_blocking(int fd) {
    std::string line;
    char c = 0;
    while (recv(fd, &c, 1, 0) == 1) {
        line += c;
        if (c == '\n') break;
    }
    return line;
}

std::string read_to_eof(int fd) {
    std::string all;
    char chunk[65536];
    for (;;) {
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return all;
        all.append(chunk, static_cast<size_t>(n));
    }
}

// A line echo server: every complete line comes back prefixed by "echo: ".
struct EchoServer {
    facteur::event::Loop& loop;
    std::unique_ptr<facteur::event::Listener> listener;
    std::vector<std::shared_ptr<facteur::event::Connection>> connections;
    std::vector<std::string> peers;

    EchoServer(facteur::event::Loop& l, UniqueFd fd) : loop(l) {
        listener = std::make_unique<facteur::event::Listener>(
            loop, std::move(fd), [this](UniqueFd client, const sockaddr_storage&, socklen_t) {
                auto connection = facteur::event::Connection::create(loop, std::move(client));
                peers.push_back(connection->peer_address());
                std::weak_ptr<facteur::event::Connection> weak = connection;
                connection->on_readable([weak] {
                    auto c = weak.lock();
                    std::string line;
                    while (c && c->read_line(line) == facteur::event::LineStatus::line) c->write("echo: " + line);
                });
                connection->start();
                connections.push_back(connection);
            });
    }
};

}  // namespace

TEST_CASE("a one-shot timer fires once and a repeating timer until cancelled") {
    facteur::event::Loop loop;
    int once = 0, repeated = 0;
    facteur::event::Timer one(loop, [&] { ++once; });
    std::unique_ptr<facteur::event::Timer> ticker;
    ticker = std::make_unique<facteur::event::Timer>(loop, [&] {
        // Cancelling from inside its own callback is allowed.
        if (++repeated == 3) ticker->cancel();
    });
    one.start(10ms);
    CHECK(one.pending());
    ticker->start_repeating(5ms);
    CHECK(ticker->pending());
    facteur::event::Timer stopper(loop, [&] { loop.stop(); });
    stopper.start(100ms);
    REQUIRE(run_until_stopped(loop));
    CHECK(once == 1);
    CHECK(repeated == 3);
    CHECK_FALSE(one.pending());
    CHECK_FALSE(ticker->pending());
}

TEST_CASE("a timer can be restarted, cancelled, and destroyed from its own callback") {
    facteur::event::Loop loop;
    int fired = 0;
    facteur::event::Timer restarted(loop, [&] { ++fired; });
    restarted.start(1h);
    restarted.start(5ms);  // Replaces the pending hour.
    facteur::event::Timer cancelled(loop, [&] { fired += 100; });
    cancelled.start(5ms);
    cancelled.cancel();
    std::unique_ptr<facteur::event::Timer> self_destroying;
    self_destroying = std::make_unique<facteur::event::Timer>(loop, [&] {
        self_destroying.reset();
        loop.stop();
    });
    self_destroying->start(30ms);
    REQUIRE(run_until_stopped(loop));
    CHECK(fired == 1);
    CHECK(self_destroying == nullptr);
}

TEST_CASE("signals are delivered on the loop, each to its own handler") {
    facteur::event::Loop loop;
    int usr1 = 0, usr2 = 0;
    facteur::event::Signal one(loop, SIGUSR1, [&] { ++usr1; });
    facteur::event::Signal two(loop, SIGUSR2, [&] {
        ++usr2;
        loop.stop();
    });
    facteur::event::Timer raiser(loop, [&] {
        raise(SIGUSR1);
        raise(SIGUSR2);
    });
    raiser.start(1ms);
    REQUIRE(run_until_stopped(loop));
    CHECK(usr1 == 1);
    CHECK(usr2 == 1);
}

TEST_CASE("listen_tcp accepts IPv4 and IPv6 literals and refuses names") {
    auto v4 = facteur::event::listen_tcp("127.0.0.1", 0);
    REQUIRE(v4.ok());
    auto port = facteur::event::local_port(v4->get());
    REQUIRE(port.ok());
    CHECK(*port != 0);
    CHECK(fcntl(v4->get(), F_GETFD) & FD_CLOEXEC);
    CHECK(fcntl(v4->get(), F_GETFL) & O_NONBLOCK);

    for (const char* host : {"::1", "[::1]"}) {
        auto v6 = facteur::event::listen_tcp(host, 0);
        if (!v6.ok()) {
            WARN("no IPv6 loopback here: " << v6.error());
            continue;
        }
        int only = 0;
        socklen_t length = sizeof only;
        REQUIRE(getsockopt(v6->get(), IPPROTO_IPV6, IPV6_V6ONLY, &only, &length) == 0);
        CHECK(only == 1);
    }

    auto bad = facteur::event::listen_tcp("mail.example.org", 25);
    REQUIRE_FALSE(bad.ok());
    auto taken = facteur::event::listen_tcp("127.0.0.1", *port);
    REQUIRE_FALSE(taken.ok());
    CHECK_THAT(taken.error(), Catch::Contains("bind"));
}

TEST_CASE("listen_unix replaces a stale socket, sets the mode, and spares other files") {
    TempDir dir;
    std::string path = dir.path + "/sock";
    {
        auto first = facteur::event::listen_unix(path, 0660);
        REQUIRE(first.ok());
    }
    // The stale socket file from the closed listener is replaced.
    auto second = facteur::event::listen_unix(path, 0666);
    REQUIRE(second.ok());
    struct stat info {};
    REQUIRE(stat(path.c_str(), &info) == 0);
    CHECK(S_ISSOCK(info.st_mode));
    CHECK((info.st_mode & 0777) == 0666);

    auto client = facteur::event::connect_unix(path);
    REQUIRE(client.ok());
    CHECK(fcntl(client->get(), F_GETFD) & FD_CLOEXEC);

    std::string file = dir.path + "/file";
    std::ofstream(file) << "precious";
    auto refused = facteur::event::listen_unix(file, 0600);
    REQUIRE_FALSE(refused.ok());
    CHECK_THAT(refused.error(), Catch::Contains("not a socket"));
    CHECK(access(file.c_str(), F_OK) == 0);

    CHECK_FALSE(facteur::event::listen_unix(dir.path + "/" + std::string(200, 'x'), 0600).ok());
    CHECK_FALSE(facteur::event::connect_unix(dir.path + "/nobody-home").ok());
    auto nonblocking = facteur::event::connect_unix_nonblocking(dir.path + "/nobody-home");
    REQUIRE_FALSE(nonblocking.ok());
}

TEST_CASE("listener and connections echo lines over TCP loopback") {
    facteur::event::Loop loop;
    auto fd = facteur::event::listen_tcp("127.0.0.1", 0);
    REQUIRE(fd.ok());
    uint16_t port = *facteur::event::local_port(fd->get());
    EchoServer server(loop, std::move(fd).value());

    std::string first, second;
    std::thread client([&] {
        UniqueFd sock = connect_tcp_blocking("127.0.0.1", port);
        if (sock) {
            send_all(sock.get(), "hello\r\nbare\n");
            first = read_line_blocking(sock.get());
            second = read_line_blocking(sock.get());
        }
        loop.stop();
    });
    bool stopped = run_until_stopped(loop);
    client.join();
    REQUIRE(stopped);
    CHECK(first == "echo: hello\r\n");
    CHECK(second == "echo: bare\n");
    REQUIRE(server.connections.size() == 1);
    CHECK(server.peers.at(0) == "127.0.0.1");
    CHECK(server.connections[0]->peer_port() != 0);
    CHECK(server.connections[0]->local_address() == "127.0.0.1");
    CHECK(server.connections[0]->local_port() == port);
    CHECK_FALSE(server.connections[0]->is_tls());
}

TEST_CASE("listener and connections echo lines over a unix socket") {
    TempDir dir;
    std::string path = dir.path + "/echo";
    facteur::event::Loop loop;
    auto fd = facteur::event::listen_unix(path, 0600);
    REQUIRE(fd.ok());
    EchoServer server(loop, std::move(fd).value());

    std::vector<std::string> replies;
    std::thread client([&] {
        auto sock = facteur::event::connect_unix(path);
        if (sock) {
            // Many pipelined lines in one write: all answered, in order.
            std::string batch;
            for (int i = 0; i < 100; ++i) batch += "line " + std::to_string(i) + "\r\n";
            send_all(sock->get(), batch);
            for (int i = 0; i < 100; ++i) replies.push_back(read_line_blocking(sock->get()));
        }
        loop.stop();
    });
    bool stopped = run_until_stopped(loop);
    client.join();
    REQUIRE(stopped);
    REQUIRE(replies.size() == 100);
    for (int i = 0; i < 100; ++i) CHECK(replies[i] == "echo: line " + std::to_string(i) + "\r\n");
    CHECK(server.peers.at(0) == "unix");
}

TEST_CASE("read_line reports an over-long line once and never buffers it whole") {
    facteur::event::Loop loop;
    auto fd = facteur::event::listen_tcp("127.0.0.1", 0);
    REQUIRE(fd.ok());
    uint16_t port = *facteur::event::local_port(fd->get());

    std::vector<std::string> lines;
    int too_long = 0;
    size_t largest_input = 0;
    std::optional<facteur::event::CloseReason> closed;
    std::shared_ptr<facteur::event::Connection> connection;
    facteur::event::Listener listener(loop, std::move(fd).value(), [&](UniqueFd client, const sockaddr_storage&, socklen_t) {
        connection = facteur::event::Connection::create(loop, std::move(client));
        connection->set_max_line_length(1000);
        connection->on_readable([&] {
            largest_input = std::max(largest_input, connection->input_size());
            std::string line;
            for (;;) {
                auto status = connection->read_line(line);
                if (status == facteur::event::LineStatus::need_more) break;
                if (status == facteur::event::LineStatus::too_long) {
                    ++too_long;
                    continue;
                }
                lines.push_back(line);
            }
        });
        connection->on_close([&](facteur::event::CloseReason reason) {
            closed = reason;
            loop.stop();
        });
        connection->start();
    });

    std::thread client([&] {
        UniqueFd sock = connect_tcp_blocking("127.0.0.1", port);
        if (!sock) return;
        send_all(sock.get(), "short\r\n");
        std::string chunk(1 << 20, 'x');
        for (int i = 0; i < 10; ++i) send_all(sock.get(), chunk);  // 10 MB without a newline.
        // Exactly at the limit: 998 characters + CRLF = 1000 octets.
        send_all(sock.get(), "\r\n" + std::string(998, 'y') + "\r\n");
        send_all(sock.get(), std::string(999, 'z') + "\r\n");  // One octet over.
        send_all(sock.get(), "after\n");
    });
    bool stopped = run_until_stopped(loop, 30s);
    client.join();
    REQUIRE(stopped);
    REQUIRE(closed.has_value());
    CHECK(*closed == facteur::event::CloseReason::peer_closed);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == "short\r\n");
    CHECK(lines[1] == std::string(998, 'y') + "\r\n");
    CHECK(lines[2] == "after\n");
    CHECK(too_long == 2);
    // Input is consumed as it arrives: nowhere near the 10 MB.
    CHECK(largest_input < 256 * 1024);
}

TEST_CASE("an idle connection is closed with idle_timeout") {
    facteur::event::Loop loop;
    auto fd = facteur::event::listen_tcp("127.0.0.1", 0);
    REQUIRE(fd.ok());
    uint16_t port = *facteur::event::local_port(fd->get());
    std::optional<facteur::event::CloseReason> closed;
    std::shared_ptr<facteur::event::Connection> connection;
    auto started = std::chrono::steady_clock::now();
    facteur::event::Listener listener(loop, std::move(fd).value(), [&](UniqueFd client, const sockaddr_storage&, socklen_t) {
        connection = facteur::event::Connection::create(loop, std::move(client));
        connection->set_idle_timeout(100ms);
        connection->on_close([&](facteur::event::CloseReason reason) {
            closed = reason;
            // Dropping the last reference from inside on_close is allowed.
            connection.reset();
            loop.stop();
        });
        connection->start();
    });
    UniqueFd sock = connect_tcp_blocking("127.0.0.1", port);
    REQUIRE(sock);
    REQUIRE(run_until_stopped(loop));
    REQUIRE(closed.has_value());
    CHECK(*closed == facteur::event::CloseReason::idle_timeout);
    CHECK(std::chrono::steady_clock::now() - started >= 90ms);
    CHECK(connection == nullptr);
    // The peer sees the close.
    settle(loop);
    CHECK(read_to_eof(sock.get()).empty());
}

TEST_CASE("close_after_write flushes everything before closing") {
    facteur::event::Loop loop;
    auto fd = facteur::event::listen_tcp("127.0.0.1", 0);
    REQUIRE(fd.ok());
    uint16_t port = *facteur::event::local_port(fd->get());
    std::optional<facteur::event::CloseReason> closed;
    std::shared_ptr<facteur::event::Connection> connection;
    const std::string big(4 << 20, 'm');
    size_t queued = 0;
    facteur::event::Listener listener(loop, std::move(fd).value(), [&](UniqueFd client, const sockaddr_storage&, socklen_t) {
        connection = facteur::event::Connection::create(loop, std::move(client));
        connection->on_close([&](facteur::event::CloseReason reason) {
            // The client thread stops the loop once it saw the close: the
            // fd is only closed when libevent finalizes the bufferevent.
            closed = reason;
        });
        connection->start();
        connection->write(big);
        connection->write("221 bye\r\n");
        queued = connection->output_size();
        connection->close_after_write();
        connection->write("never sent");
    });
    std::string received;
    std::thread client([&] {
        UniqueFd sock = connect_tcp_blocking("127.0.0.1", port);
        if (!sock) {
            loop.stop();
            return;
        }
        // Read slowly at first so the output really has to wait in the buffer.
        std::this_thread::sleep_for(50ms);
        received = read_to_eof(sock.get());
        loop.stop();
    });
    bool stopped = run_until_stopped(loop);
    client.join();
    REQUIRE(stopped);
    CHECK(queued > 0);
    REQUIRE(closed.has_value());
    CHECK(*closed == facteur::event::CloseReason::local_close);
    CHECK(received.size() == big.size() + 9);
    CHECK(received == big + "221 bye\r\n");
}

TEST_CASE("a reply queued when the peer half-closes still goes out") {
    facteur::event::Loop loop;
    auto fd = facteur::event::listen_tcp("127.0.0.1", 0);
    REQUIRE(fd.ok());
    uint16_t port = *facteur::event::local_port(fd->get());
    std::optional<facteur::event::CloseReason> closed;
    std::shared_ptr<facteur::event::Connection> connection;
    facteur::event::Listener listener(loop, std::move(fd).value(), [&](UniqueFd client, const sockaddr_storage&, socklen_t) {
        connection = facteur::event::Connection::create(loop, std::move(client));
        connection->on_readable([&] {
            std::string line;
            while (connection->read_line(line) == facteur::event::LineStatus::line) connection->write("221 closing\r\n");
        });
        connection->on_close([&](facteur::event::CloseReason reason) {
            // The client thread stops the loop once it saw the close: the
            // fd is only closed when libevent finalizes the bufferevent.
            closed = reason;
        });
        connection->start();
    });
    std::string reply;
    std::thread client([&] {
        UniqueFd sock = connect_tcp_blocking("127.0.0.1", port);
        if (!sock) {
            loop.stop();
            return;
        }
        send_all(sock.get(), "QUIT\r\n");
        shutdown(sock.get(), SHUT_WR);
        reply = read_to_eof(sock.get());
        loop.stop();
    });
    bool stopped = run_until_stopped(loop);
    client.join();
    REQUIRE(stopped);
    CHECK(reply == "221 closing\r\n");
    REQUIRE(closed.has_value());
    CHECK(*closed == facteur::event::CloseReason::peer_closed);
}

TEST_CASE("pause_reading holds input back and resume_reading delivers it") {
    facteur::event::Loop loop;
    auto fd = facteur::event::listen_tcp("127.0.0.1", 0);
    REQUIRE(fd.ok());
    uint16_t port = *facteur::event::local_port(fd->get());
    std::vector<std::string> lines;
    std::shared_ptr<facteur::event::Connection> connection;
    facteur::event::Timer resume(loop, [&] { connection->resume_reading(); });
    facteur::event::Listener listener(loop, std::move(fd).value(), [&](UniqueFd client, const sockaddr_storage&, socklen_t) {
        connection = facteur::event::Connection::create(loop, std::move(client));
        connection->on_readable([&] {
            std::string line;
            // One line per wake-up, then pause as a session waiting on a
            // worker would: the rest must come back after resume_reading().
            if (connection->read_line(line) == facteur::event::LineStatus::line) {
                lines.push_back(line);
                if (lines.size() == 3) {
                    loop.stop();
                    return;
                }
                connection->pause_reading();
                resume.start(10ms);
            }
        });
        connection->start();
    });
    std::thread client([&] {
        UniqueFd sock = connect_tcp_blocking("127.0.0.1", port);
        if (!sock) return;
        send_all(sock.get(), "a\r\nb\r\nc\r\n");
        std::this_thread::sleep_for(200ms);
    });
    bool stopped = run_until_stopped(loop);
    client.join();
    REQUIRE(stopped);
    CHECK(lines == std::vector<std::string>{"a\r\n", "b\r\n", "c\r\n"});
}

TEST_CASE("an exception from a connection callback closes that connection only") {
    facteur::event::Loop loop;
    auto fd = facteur::event::listen_tcp("127.0.0.1", 0);
    REQUIRE(fd.ok());
    uint16_t port = *facteur::event::local_port(fd->get());
    std::optional<facteur::event::CloseReason> closed;
    std::shared_ptr<facteur::event::Connection> connection;
    facteur::event::Listener listener(loop, std::move(fd).value(), [&](UniqueFd client, const sockaddr_storage&, socklen_t) {
        connection = facteur::event::Connection::create(loop, std::move(client));
        connection->on_readable([] { throw std::runtime_error("session bug"); });
        connection->on_close([&](facteur::event::CloseReason reason) {
            // The client thread stops the loop once it saw the close: the
            // fd is only closed when libevent finalizes the bufferevent.
            closed = reason;
        });
        connection->start();
    });
    std::thread client([&] {
        UniqueFd sock = connect_tcp_blocking("127.0.0.1", port);
        if (!sock) {
            loop.stop();
            return;
        }
        send_all(sock.get(), "boom\r\n");
        read_to_eof(sock.get());
        loop.stop();
    });
    bool stopped = run_until_stopped(loop);
    client.join();
    REQUIRE(stopped);
    REQUIRE(closed.has_value());
    CHECK(*closed == facteur::event::CloseReason::error);
}

TEST_CASE("worker pool jobs run off the loop and their results arrive on it") {
    facteur::event::Loop loop;
    facteur::event::WorkerPool pool(loop, 3);
    const auto loop_thread = std::this_thread::get_id();
    std::vector<int> results;
    std::atomic<int> off_loop{0};
    bool all_done_on_loop = true;
    for (int i = 0; i < 20; ++i) {
        pool.submit<int>(
            [i, loop_thread, &off_loop] {
                if (std::this_thread::get_id() != loop_thread) ++off_loop;
                return i * i;
            },
            [&, loop_thread](int value) {
                if (std::this_thread::get_id() != loop_thread) all_done_on_loop = false;
                results.push_back(value);
                if (results.size() == 21) loop.stop();
            });
    }
    bool void_done = false;
    pool.submit([] {}, [&] {
        void_done = true;
        results.push_back(-1);
        if (results.size() == 21) loop.stop();
    });
    CHECK(pool.pending() == 21);
    REQUIRE(run_until_stopped(loop));
    CHECK(off_loop == 20);
    CHECK(all_done_on_loop);
    CHECK(void_done);
    CHECK(results.size() == 21);
    CHECK(pool.pending() == 0);
    std::sort(results.begin(), results.end());
    CHECK(results.front() == -1);
    CHECK(results.back() == 19 * 19);
}

TEST_CASE("a job that throws is logged and its done never runs") {
    facteur::event::Loop loop;
    facteur::event::WorkerPool pool(loop, 1);
    bool bad_done = false, good_done = false;
    pool.submit<int>([]() -> int { throw std::runtime_error("job bug"); }, [&](int) { bad_done = true; });
    pool.submit<std::string>([] { return std::string("fine"); }, [&](std::string value) {
        good_done = value == "fine";
        loop.stop();
    });
    REQUIRE(run_until_stopped(loop));
    CHECK_FALSE(bad_done);
    CHECK(good_done);
    CHECK(pool.pending() == 0);
}

TEST_CASE("destroying a pool with pending jobs is safe and runs no done") {
    facteur::event::Loop loop;
    std::atomic<int> started{0};
    bool any_done = false;
    {
        facteur::event::WorkerPool pool(loop, 2);
        for (int i = 0; i < 50; ++i)
            pool.submit([&] {
                ++started;
                std::this_thread::sleep_for(10ms);
            }, [&] { any_done = true; });
        std::this_thread::sleep_for(5ms);
    }
    // The loop runs after the pool is gone: nothing left may call back.
    facteur::event::Timer stop(loop, [&] { loop.stop(); });
    stop.start(50ms);
    REQUIRE(run_until_stopped(loop));
    CHECK_FALSE(any_done);
    CHECK(started < 50);
}

TEST_CASE("a pool destroyed from a done callback is safe") {
    facteur::event::Loop loop;
    auto pool = std::make_unique<facteur::event::WorkerPool>(loop, 1);
    int done_count = 0;
    for (int i = 0; i < 5; ++i)
        pool->submit([] {}, [&] {
            ++done_count;
            pool.reset();
            loop.stop();
        });
    REQUIRE(run_until_stopped(loop));
    CHECK(done_count == 1);
    CHECK(pool == nullptr);
}

namespace {

// A throw-away self-signed certificate made with the openssl CLI.
struct TestCertificate {
    TempDir dir;
    std::string key = dir.path + "/key.pem";
    std::string cert = dir.path + "/cert.pem";
    TestCertificate() {
        std::string command = "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 -keyout '" + key +
                              "' -out '" + cert + "' >/dev/null 2>&1";
        REQUIRE(std::system(command.c_str()) == 0);
    }
};

struct SslCtxDeleter {
    void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtx = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
struct SslDeleter {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
};

SslCtx server_context(const TestCertificate& certificate) {
    SslCtx ctx(SSL_CTX_new(TLS_server_method()));
    REQUIRE(ctx);
    REQUIRE(SSL_CTX_use_certificate_chain_file(ctx.get(), certificate.cert.c_str()) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey_file(ctx.get(), certificate.key.c_str(), SSL_FILETYPE_PEM) == 1);
    return ctx;
}

// Client side of a TLS session on a blocking socket (the test drives it in a
// thread, so no Catch2 assertions in here).
struct TlsClient {
    SslCtx ctx{SSL_CTX_new(TLS_client_method())};
    std::unique_ptr<SSL, SslDeleter> ssl;
    bool handshake(int fd) {
        ssl.reset(SSL_new(ctx.get()));
        SSL_set_fd(ssl.get(), fd);
        return SSL_connect(ssl.get()) == 1;
    }
    bool write(std::string_view data) {
        return SSL_write(ssl.get(), data.data(), static_cast<int>(data.size())) == static_cast<int>(data.size());
    }
    std::string read_line() {
        std::string line;
        char c = 0;
        while (SSL_read(ssl.get(), &c, 1) == 1) {
            line += c;
            if (c == '\n') break;
        }
        return line;
    }
};

}  // namespace

TEST_CASE("start_tls upgrades a live connection and drops pipelined plaintext") {
    TestCertificate certificate;
    SslCtx ctx = server_context(certificate);
    facteur::event::Loop loop;
    auto fd = facteur::event::listen_tcp("127.0.0.1", 0);
    REQUIRE(fd.ok());
    uint16_t port = *facteur::event::local_port(fd->get());

    std::vector<std::string> seen;
    std::optional<bool> tls_ok;
    std::string version, cipher;
    int bits = 0;
    std::shared_ptr<facteur::event::Connection> connection;
    facteur::event::Listener listener(loop, std::move(fd).value(), [&](UniqueFd client, const sockaddr_storage&, socklen_t) {
        connection = facteur::event::Connection::create(loop, std::move(client));
        connection->on_readable([&] {
            std::string line;
            while (connection->read_line(line) == facteur::event::LineStatus::line) {
                seen.push_back(line);
                if (line == "STARTTLS\r\n") {
                    connection->write("220 Ready to start TLS\r\n");
                    connection->start_tls(ctx.get(), [&](bool ok) {
                        tls_ok = ok;
                        version = connection->tls_version();
                        cipher = connection->tls_cipher();
                        bits = connection->tls_cipher_bits();
                    });
                    return;
                }
                connection->write("250 " + line);
            }
        });
        connection->on_close([&](facteur::event::CloseReason) { loop.stop(); });
        connection->start();
    });

    std::string greeting, ready, answer;
    bool handshake = false;
    std::thread client([&] {
        UniqueFd sock = connect_tcp_blocking("127.0.0.1", port);
        if (!sock) return;
        send_all(sock.get(), "EHLO x\r\n");
        greeting = read_line_blocking(sock.get());
        // The injection of RFC 3207 §4.2 / CVE-2011-0411: a command
        // pipelined in clear text right behind STARTTLS.
        send_all(sock.get(), "STARTTLS\r\nRSET-INJECTED\r\n");
        ready = read_line_blocking(sock.get());
        TlsClient tls;
        handshake = tls.handshake(sock.get());
        if (handshake && tls.write("NOOP\r\n")) answer = tls.read_line();
        if (handshake) SSL_shutdown(tls.ssl.get());
    });
    bool stopped = run_until_stopped(loop);
    client.join();
    REQUIRE(stopped);
    CHECK(greeting == "250 EHLO x\r\n");
    CHECK(ready == "220 Ready to start TLS\r\n");
    CHECK(handshake);
    REQUIRE(tls_ok.has_value());
    CHECK(*tls_ok);
    CHECK(answer == "250 NOOP\r\n");
    CHECK(seen == std::vector<std::string>{"EHLO x\r\n", "STARTTLS\r\n", "NOOP\r\n"});
    CHECK_THAT(version, Catch::StartsWith("TLSv1."));
    CHECK_FALSE(cipher.empty());
    CHECK(bits >= 128);
    CHECK(connection->is_tls());
}

TEST_CASE("a failed STARTTLS handshake reports done(false) and tls_error") {
    TestCertificate certificate;
    SslCtx ctx = server_context(certificate);
    facteur::event::Loop loop;
    auto fd = facteur::event::listen_tcp("127.0.0.1", 0);
    REQUIRE(fd.ok());
    uint16_t port = *facteur::event::local_port(fd->get());
    std::optional<bool> tls_ok;
    std::optional<facteur::event::CloseReason> closed;
    std::shared_ptr<facteur::event::Connection> connection;
    facteur::event::Listener listener(loop, std::move(fd).value(), [&](UniqueFd client, const sockaddr_storage&, socklen_t) {
        connection = facteur::event::Connection::create(loop, std::move(client));
        connection->on_readable([&] {
            std::string line;
            if (connection->read_line(line) == facteur::event::LineStatus::line) {
                connection->write("220 go ahead\r\n");
                connection->start_tls(ctx.get(), [&](bool ok) { tls_ok = ok; });
            }
        });
        connection->on_close([&](facteur::event::CloseReason reason) {
            // The client thread stops the loop once it saw the close: the
            // fd is only closed when libevent finalizes the bufferevent.
            closed = reason;
        });
        connection->start();
    });
    std::thread client([&] {
        UniqueFd sock = connect_tcp_blocking("127.0.0.1", port);
        if (!sock) {
            loop.stop();
            return;
        }
        send_all(sock.get(), "STARTTLS\r\n");
        read_line_blocking(sock.get());
        // Not a TLS ClientHello.
        send_all(sock.get(), "this is not TLS at all, just text\r\n\r\n\r\n\r\n\r\n\r\n");
        read_to_eof(sock.get());
        loop.stop();
    });
    bool stopped = run_until_stopped(loop);
    client.join();
    REQUIRE(stopped);
    REQUIRE(tls_ok.has_value());
    CHECK_FALSE(*tls_ok);
    REQUIRE(closed.has_value());
    CHECK(*closed == facteur::event::CloseReason::tls_error);
}

TEST_CASE("create_tls_server speaks implicit TLS") {
    TestCertificate certificate;
    SslCtx ctx = server_context(certificate);
    facteur::event::Loop loop;
    auto fd = facteur::event::listen_tcp("127.0.0.1", 0);
    REQUIRE(fd.ok());
    uint16_t port = *facteur::event::local_port(fd->get());
    std::shared_ptr<facteur::event::Connection> connection;
    facteur::event::Listener listener(loop, std::move(fd).value(), [&](UniqueFd client, const sockaddr_storage&, socklen_t) {
        connection = facteur::event::Connection::create_tls_server(loop, std::move(client), ctx.get());
        connection->write("220 hello over TLS\r\n");
        connection->on_readable([&] {
            std::string line;
            while (connection->read_line(line) == facteur::event::LineStatus::line) connection->write("250 " + line);
        });
        connection->on_close([&](facteur::event::CloseReason) { loop.stop(); });
        connection->start();
    });
    std::string banner, answer;
    std::thread client([&] {
        UniqueFd sock = connect_tcp_blocking("127.0.0.1", port);
        if (!sock) return;
        TlsClient tls;
        if (!tls.handshake(sock.get())) return;
        banner = tls.read_line();
        if (tls.write("QUIT\r\n")) answer = tls.read_line();
    });
    bool stopped = run_until_stopped(loop);
    client.join();
    REQUIRE(stopped);
    CHECK(banner == "220 hello over TLS\r\n");
    CHECK(answer == "250 QUIT\r\n");
    CHECK(connection->is_tls());
}
