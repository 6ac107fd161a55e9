// RAII over libevent 2.1: loop, timers, signals, listeners, buffered
// connections with line limits and idle timeouts, and a worker pool whose
// results come back on the loop (DESIGN §2 `event`, §6).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "libmail/result.hpp"
#include "libmail/unique_fd.hpp"

struct event_base;
struct event;
struct bufferevent;
typedef struct ssl_ctx_st SSL_CTX;

namespace facteur::event {

// One event_base per daemon process (DESIGN §6). Created with libevent's
// pthreads locking enabled so WorkerPool threads may signal it. Creating a
// Loop sets SIGPIPE to SIG_IGN (writes to a vanished peer must fail with
// EPIPE, not kill the daemon).
class Loop {
public:
    Loop();
    ~Loop();
    Loop(const Loop&) = delete;
    Loop& operator=(const Loop&) = delete;
    event_base* base() { return base_; }
    // Runs until stop() or until no event is pending.
    void run();
    // Makes run() return after the current callback; callable from callbacks.
    void stop();

private:
    event_base* base_;
};

// A one-shot or repeating timer. The callback may destroy the Timer.
class Timer {
public:
    Timer(Loop& loop, std::function<void()> callback);
    ~Timer();
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;
    // (Re)arms the timer; a pending expiry is replaced.
    void start(std::chrono::milliseconds delay);
    void start_repeating(std::chrono::milliseconds interval);
    void cancel();
    bool pending() const;

private:
    static void fire(int, short, void* self);
    std::function<void()> callback_;
    struct event* event_ = nullptr;
    Loop& loop_;
};

// A signal delivered on the loop (evsignal): the callback runs as an ordinary
// callback, so it may do anything. Several signals: one object each.
class Signal {
public:
    Signal(Loop& loop, int signo, std::function<void()> callback);
    ~Signal();
    Signal(const Signal&) = delete;
    Signal& operator=(const Signal&) = delete;

private:
    static void fire(int, short, void* self);
    std::function<void()> callback_;
    struct event* event_ = nullptr;
};

// Socket helpers. Every descriptor is CLOEXEC; listening sockets are
// non-blocking.
// host: numeric IPv4 or IPv6 ("::1" or "[::1]"); empty means any IPv4
// address. IPv6 sockets are IPV6_V6ONLY.
Result<UniqueFd> listen_tcp(std::string_view host, uint16_t port, int backlog = 511);
// Removes a stale socket file first (refuses to remove anything that is not
// a socket), then chmods the socket to `mode`.
Result<UniqueFd> listen_unix(const std::string& path, mode_t mode, int backlog = 511);
// Blocking connect; the returned fd is blocking.
Result<UniqueFd> connect_unix(const std::string& path);
// Non-blocking connect for code on the loop: the returned fd is non-blocking
// and may still be connecting (write readiness reports the outcome). A full
// listen backlog is an error ("busy"), never a wait.
Result<UniqueFd> connect_unix_nonblocking(const std::string& path);
Result<uint16_t> local_port(int fd);

// A non-blocking outgoing TCP connection (relayd's SMTP client). `address`
// is a numeric IPv4 or IPv6 address ("[::1]" accepted); `bind_address`, when
// not empty, a numeric source address of the same family. `done` runs
// exactly once, always later on the loop (never inside connect_tcp), with a
// connected non-blocking CLOEXEC socket or an error text such as
// "Connection refused" or "Connection timed out" (the caller adds which
// host it was). Destroying the handle first cancels the attempt: `done`
// then never runs.
class TcpConnect {
public:
    using Done = std::function<void(Result<UniqueFd>)>;
    TcpConnect(Loop& loop, Done done);
    ~TcpConnect();
    TcpConnect(const TcpConnect&) = delete;
    TcpConnect& operator=(const TcpConnect&) = delete;

private:
    friend std::unique_ptr<TcpConnect> connect_tcp(Loop&, std::string_view, uint16_t, std::string_view,
                                                   std::chrono::milliseconds, TcpConnect::Done);
    void begin(std::string_view address, uint16_t port, std::string_view bind_address,
               std::chrono::milliseconds timeout);
    void fail_later(std::string error);
    static void on_event(int fd, short what, void* self);
    Loop& loop_;
    Done done_;
    UniqueFd fd_;
    std::string error_;  // set when the attempt failed before waiting
    struct event* event_ = nullptr;
};
std::unique_ptr<TcpConnect> connect_tcp(Loop& loop, std::string_view address, uint16_t port,
                                        std::string_view bind_address, std::chrono::milliseconds timeout,
                                        TcpConnect::Done done);

// Accepts connections on a listening socket (accept4 CLOEXEC|NONBLOCK).
// Out of descriptors: logs and pauses accepting for 100 ms instead of
// spinning; aborted connections are skipped.
class Listener {
public:
    using AcceptCallback = std::function<void(UniqueFd client, const sockaddr_storage& peer, socklen_t peer_length)>;
    Listener(Loop& loop, UniqueFd listening_fd, AcceptCallback on_accept);
    ~Listener();
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;
    void enable();
    void disable();

private:
    static void on_readable(int fd, short, void* self);
    static void on_resume(int, short, void* self);
    UniqueFd fd_;
    AcceptCallback on_accept_;
    struct event* event_ = nullptr;
    struct event* resume_ = nullptr;
    bool enabled_ = false;
};

enum class CloseReason { peer_closed, idle_timeout, error, local_close, tls_error };
enum class LineStatus { line, need_more, too_long };

// A buffered stream connection (bufferevent), plain or TLS. The session pulls
// input when told new input arrived. Always held by shared_ptr; callbacks
// never outlive it (the bufferevent is freed with it) and a callback may
// call close() or drop the last reference.
class Connection : public std::enable_shared_from_this<Connection> {
    struct Key {
        explicit Key() = default;
    };

public:
    static std::shared_ptr<Connection> create(Loop& loop, UniqueFd fd);
    // Implicit TLS (e.g. submissions, RFC 8314): the handshake runs first.
    static std::shared_ptr<Connection> create_tls_server(Loop& loop, UniqueFd fd, SSL_CTX* ctx);
    Connection(Key, Loop& loop, int fd);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Set before start(). on_readable: new input arrived; consume every
    // complete line (input that stays buffered is not announced again until
    // more arrives or resume_reading()). on_close fires exactly once, unless
    // the connection is destroyed first. on_drained: output buffer emptied.
    void on_readable(std::function<void()> callback) { on_readable_ = std::move(callback); }
    void on_close(std::function<void(CloseReason)> callback) { on_close_ = std::move(callback); }
    void on_drained(std::function<void()> callback) { on_drained_ = std::move(callback); }
    void start();

    // Longest accepted line INCLUDING its "\n" (and "\r"): RFC 5321 §4.5.3.1
    // limits count the CRLF. Default 4096.
    void set_max_line_length(size_t length) { max_line_length_ = length; }
    // out = one raw line including "\n" (and a preceding "\r" if any), so the
    // caller can refuse bare LF. too_long is returned once per over-long
    // line; its bytes are discarded up to and including the next "\n", even
    // across calls, so a huge line never sits in memory.
    LineStatus read_line(std::string& out);
    size_t input_size() const;
    std::string read_bytes(size_t max);
    // Drops everything buffered (RFC 3207 §4.2: nothing pipelined in clear
    // text before TLS may be acted on).
    void discard_input();

    void write(std::string_view data);
    // Stops reading, flushes, then closes with on_close(local_close).
    void close_after_write();
    // Closes now (pending output is dropped), on_close(local_close).
    void close();
    size_t output_size() const;
    bool closed() const { return closed_; }

    void pause_reading();
    void resume_reading();
    // The peer must send something (or take our output) within this time or
    // the connection closes with idle_timeout. Zero disables.
    void set_idle_timeout(std::chrono::milliseconds timeout);

    // STARTTLS as server: once the queued output is flushed (the "220 Ready
    // to start TLS" goes out in clear), buffered plaintext input is discarded
    // and a TLS handshake runs; done(true) when it completed, done(false) and
    // on_close(tls_error) when it failed.
    void start_tls(SSL_CTX* ctx, std::function<void(bool ok)> done);
    // STARTTLS as client (RFC 3207 §4, relayd): call once the server's "220"
    // to STARTTLS has been read. Buffered plaintext input is discarded and
    // a client handshake runs with SNI = server_name; when `ctx` verifies
    // peers, the certificate must also match server_name (tls::prepare_client).
    // done(true) when the handshake completed; done(false) and
    // on_close(tls_error) when it failed, with the reason in tls_error().
    void start_tls_client(SSL_CTX* ctx, std::string server_name, std::function<void(bool ok)> done);
    // After a client handshake (or its failure): why it failed ("certificate
    // verify failed: self-signed certificate", ...), empty when it did not.
    const std::string& tls_error() const { return tls_error_; }
    // X509_V_OK (0) when the peer's chain verified (meaningful for any
    // client context: OpenSSL records the result even without
    // SSL_VERIFY_PEER), and whether the peer showed a certificate at all.
    long tls_verify_result() const { return tls_verify_result_; }
    bool tls_peer_has_certificate() const { return tls_peer_certificate_; }
    bool is_tls() const { return tls_; }
    std::string tls_version() const;
    std::string tls_cipher() const;
    int tls_cipher_bits() const;

    // Numeric peer address (IPv4-mapped IPv6 shown as IPv4; "unix" for
    // AF_UNIX) and port, read once at creation.
    std::string peer_address() const { return peer_address_; }
    uint16_t peer_port() const { return peer_port_; }
    std::string local_address() const { return local_address_; }
    uint16_t local_port() const { return local_port_; }
    int fd() const { return fd_; }

private:
    void attach(bufferevent* bev);
    void finish(CloseReason reason);
    void drain_then_close(CloseReason reason);
    void apply_timeouts();
    void begin_tls();
    static void read_callback(bufferevent*, void* self);
    static void write_callback(bufferevent*, void* self);
    static void event_callback(bufferevent*, short what, void* self);

    Loop& loop_;
    int fd_;
    bufferevent* bev_ = nullptr;
    bool closed_ = false;
    bool closing_after_write_ = false;
    CloseReason drain_reason_ = CloseReason::local_close;
    bool discarding_line_ = false;
    bool tls_ = false;
    bool handshaking_ = false;
    size_t max_line_length_ = 4096;
    std::chrono::milliseconds idle_timeout_{0};
    std::function<void()> on_readable_;
    std::function<void(CloseReason)> on_close_;
    std::function<void()> on_drained_;
    std::function<void(bool)> tls_done_;
    SSL_CTX* pending_tls_ctx_ = nullptr;
    bool tls_client_ = false;  // the pending/active handshake is a client one
    std::string tls_server_name_;
    std::string tls_error_;
    long tls_verify_result_ = -1;
    bool tls_peer_certificate_ = false;
    void record_tls_result(bool failed);
    std::string peer_address_, local_address_;
    uint16_t peer_port_ = 0, local_port_ = 0;
};

// Runs blocking work (fsync, SQLite, password hashing) off the loop; `done`
// runs later on the loop thread. A job that throws is logged and its `done`
// does not run. Destruction joins the threads: queued jobs are dropped, a
// running job finishes, and no `done` runs after the pool is gone.
class WorkerPool {
public:
    WorkerPool(Loop& loop, size_t threads);
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    // T is named explicitly: pool.submit<int>([] { return 42; }, [](int v) { ... });
    template <typename T>
    void submit(std::function<T()> job, std::function<void(T)> done) {
        auto result = std::make_shared<std::optional<T>>();
        enqueue([job = std::move(job), result] { result->emplace(job()); },
                [done = std::move(done), result] {
                    if (result->has_value() && done) done(std::move(**result));
                });
    }
    void submit(std::function<void()> job, std::function<void()> done) { enqueue(std::move(job), std::move(done)); }
    // Jobs submitted whose `done` has not run yet.
    size_t pending() const;

private:
    struct Task {
        std::function<void()> job;
        std::function<void()> done;
    };
    void enqueue(std::function<void()> job, std::function<void()> done);
    void work();
    static void on_completion(int fd, short, void* self);

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Task> queue_;
    std::deque<std::function<void()>> completed_;
    size_t in_flight_ = 0;
    bool stopping_ = false;
    UniqueFd eventfd_;
    struct event* completion_event_ = nullptr;
    std::vector<std::thread> threads_;
    // Lets a completion batch notice that a `done` destroyed the pool.
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace facteur::event
