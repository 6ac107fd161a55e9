// libevent RAII wrappers, socket helpers, and the worker pool.
#include "libmail/event.hpp"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "libmail/panic.hpp"

namespace facteur::event {
namespace {

std::string error_text(int error) { return std::strerror(error); }

timeval to_timeval(std::chrono::milliseconds duration) {
    if (duration.count() < 0) duration = std::chrono::milliseconds(0);
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(duration.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((duration.count() % 1000) * 1000);
    return tv;
}

void describe(const sockaddr_storage& address, std::string& host, uint16_t& port) {
    char text[INET6_ADDRSTRLEN] = {};
    if (address.ss_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(&address);
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
        port = ntohs(in->sin_port);
        host = text;
    } else if (address.ss_family == AF_INET6) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
        port = ntohs(in6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], text, sizeof text);
        } else {
            inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
        }
        host = text;
    } else {
        host = "unix";
        port = 0;
    }
}

// Runs a callback with every exception caught: none may cross libevent.
// Returns false when one was thrown.
template <typename Function>
bool guarded(const char* where, Function&& function) {
    try {
        function();
        return true;
    } catch (const std::exception& error) {
        log::error("{}: unexpected exception: {}", where, error.what());
    } catch (...) {
        log::error("{}: unexpected exception", where);
    }
    return false;
}

struct ThreadingInit {
    ThreadingInit() { evthread_use_pthreads(); }
};

}  // namespace

Loop::Loop() {
    static ThreadingInit threading;
    // libevent writes sockets with writev(), which raises SIGPIPE when the
    // peer is gone; a daemon must get EPIPE instead of dying.
    signal(SIGPIPE, SIG_IGN);
    base_ = event_base_new();
    if (base_ == nullptr) panic("event_base_new failed");
}

Loop::~Loop() {
    // A bufferevent freed just before holds a reference until its deferred
    // callbacks and finalizers run on a later iteration; event_base_free()
    // would drop them unrun (and leak the bufferevent). Let them run first.
    // Every object with callbacks on this loop is gone by now, so nothing
    // but libevent's own clean-up can run.
    for (int i = 0; i < 4; ++i) event_base_loop(base_, EVLOOP_NONBLOCK);
    event_base_free(base_);
}

void Loop::run() { event_base_dispatch(base_); }

void Loop::stop() { event_base_loopbreak(base_); }

Timer::Timer(Loop& loop, std::function<void()> callback) : callback_(std::move(callback)), loop_(loop) {
    event_ = event_new(loop.base(), -1, 0, &Timer::fire, this);
    if (event_ == nullptr) panic("event_new failed");
}

Timer::~Timer() { event_free(event_); }

void Timer::fire(int, short, void* self) {
    auto* timer = static_cast<Timer*>(self);
    // Copy: the callback may destroy the timer.
    auto callback = timer->callback_;
    guarded("timer", callback);
}

void Timer::start(std::chrono::milliseconds delay) {
    event_del(event_);
    event_assign(event_, loop_.base(), -1, 0, &Timer::fire, this);
    timeval tv = to_timeval(delay);
    event_add(event_, &tv);
}

void Timer::start_repeating(std::chrono::milliseconds interval) {
    event_del(event_);
    event_assign(event_, loop_.base(), -1, EV_PERSIST, &Timer::fire, this);
    timeval tv = to_timeval(interval);
    event_add(event_, &tv);
}

void Timer::cancel() { event_del(event_); }

bool Timer::pending() const { return event_pending(event_, EV_TIMEOUT, nullptr) != 0; }

Signal::Signal(Loop& loop, int signo, std::function<void()> callback) : callback_(std::move(callback)) {
    event_ = evsignal_new(loop.base(), signo, &Signal::fire, this);
    if (event_ == nullptr || event_add(event_, nullptr) != 0) panic("evsignal_new failed");
}

Signal::~Signal() { event_free(event_); }

void Signal::fire(int, short, void* self) {
    auto* signal = static_cast<Signal*>(self);
    guarded("signal", signal->callback_);
}

Result<UniqueFd> listen_tcp(std::string_view host_view, uint16_t port, int backlog) {
    std::string host(host_view);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    std::string service = std::to_string(port);
    int error = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
    if (error != 0) return make_error(fmt::format("{}: {}", host, gai_strerror(error)));
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(found, freeaddrinfo);
    UniqueFd fd(socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return make_error(fmt::format("socket: {}", error_text(errno)));
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (found->ai_family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0)
        return make_error(fmt::format("bind: {}", error_text(errno)));
    if (listen(fd.get(), backlog) != 0) return make_error(fmt::format("listen: {}", error_text(errno)));
    return fd;
}

Result<UniqueFd> listen_unix(const std::string& path, mode_t mode, int backlog) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path) return make_error(fmt::format("{}: socket path too long", path));
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    struct stat info {};
    if (lstat(path.c_str(), &info) == 0) {
        if (!S_ISSOCK(info.st_mode)) return make_error(fmt::format("{} exists and is not a socket", path));
        unlink(path.c_str());
    }
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return make_error(fmt::format("socket: {}", error_text(errno)));
    // Bind with a restrictive umask so the socket is never briefly too open.
    mode_t old_mask = umask(0177);
    int bound = bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
    int saved = errno;
    umask(old_mask);
    if (bound != 0) return make_error(fmt::format("bind {}: {}", path, error_text(saved)));
    if (chmod(path.c_str(), mode) != 0) return make_error(fmt::format("chmod {}: {}", path, error_text(errno)));
    if (listen(fd.get(), backlog) != 0) return make_error(fmt::format("listen {}: {}", path, error_text(errno)));
    return fd;
}

Result<UniqueFd> connect_unix(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path) return make_error(fmt::format("{}: socket path too long", path));
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return make_error(fmt::format("socket: {}", error_text(errno)));
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
        return make_error(fmt::format("connect {}: {}", path, error_text(errno)));
    return fd;
}

Result<UniqueFd> connect_unix_nonblocking(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path) return make_error(fmt::format("{}: socket path too long", path));
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return make_error(fmt::format("socket: {}", error_text(errno)));
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        // Linux unix sockets answer EAGAIN when the backlog is full: the
        // server is overloaded, and waiting here would block the loop.
        if (errno == EAGAIN) return make_error(fmt::format("connect {}: server busy", path));
        if (errno != EINPROGRESS) return make_error(fmt::format("connect {}: {}", path, error_text(errno)));
    }
    return fd;
}

Result<uint16_t> local_port(int fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
        return make_error(fmt::format("getsockname: {}", error_text(errno)));
    std::string host;
    uint16_t port = 0;
    describe(address, host, port);
    return port;
}

Listener::Listener(Loop& loop, UniqueFd listening_fd, AcceptCallback on_accept)
    : fd_(std::move(listening_fd)), on_accept_(std::move(on_accept)) {
    int flags = fcntl(fd_.get(), F_GETFL);
    fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK);
    event_ = event_new(loop.base(), fd_.get(), EV_READ | EV_PERSIST, &Listener::on_readable, this);
    resume_ = event_new(loop.base(), -1, 0, &Listener::on_resume, this);
    if (event_ == nullptr || resume_ == nullptr) panic("event_new failed");
    enable();
}

Listener::~Listener() {
    event_free(event_);
    event_free(resume_);
}

void Listener::enable() {
    enabled_ = true;
    event_add(event_, nullptr);
}

void Listener::disable() {
    enabled_ = false;
    event_del(event_);
    event_del(resume_);
}

void Listener::on_resume(int, short, void* self) {
    auto* listener = static_cast<Listener*>(self);
    if (listener->enabled_) event_add(listener->event_, nullptr);
}

void Listener::on_readable(int fd, short, void* self) {
    auto* listener = static_cast<Listener*>(self);
    // Accept a bounded batch per wake-up so one busy listener cannot starve the loop.
    for (int i = 0; i < 64; ++i) {
        sockaddr_storage peer{};
        socklen_t length = sizeof peer;
        int client = accept4(fd, reinterpret_cast<sockaddr*>(&peer), &length, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (client < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            if (errno == ECONNABORTED || errno == EPROTO) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log::warning("accept: {}; pausing new connections for 100ms", error_text(errno));
                // Not disable(): the pause must not forget that we are enabled.
                event_del(listener->event_);
                timeval tv = to_timeval(std::chrono::milliseconds(100));
                event_add(listener->resume_, &tv);
                return;
            }
            log::error("accept: {}", error_text(errno));
            return;
        }
        UniqueFd owned(client);
        // Copy: the callback may replace state of the listener (disable it).
        auto callback = listener->on_accept_;
        guarded("accept", [&] { callback(std::move(owned), peer, length); });
        if (!listener->enabled_) return;
    }
}

Connection::Connection(Key, Loop& loop, int fd) : loop_(loop), fd_(fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) describe(address, peer_address_, peer_port_);
    length = sizeof address;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0)
        describe(address, local_address_, local_port_);
}

std::shared_ptr<Connection> Connection::create(Loop& loop, UniqueFd fd) {
    evutil_make_socket_nonblocking(fd.get());
    int raw = fd.get();
    auto connection = std::make_shared<Connection>(Key(), loop, raw);
    bufferevent* bev = bufferevent_socket_new(loop.base(), raw, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev == nullptr) panic("bufferevent_socket_new failed");
    fd.release();  // The bufferevent owns it now (BEV_OPT_CLOSE_ON_FREE).
    connection->attach(bev);
    return connection;
}

std::shared_ptr<Connection> Connection::create_tls_server(Loop& loop, UniqueFd fd, SSL_CTX* ctx) {
    evutil_make_socket_nonblocking(fd.get());
    int raw = fd.get();
    auto connection = std::make_shared<Connection>(Key(), loop, raw);
    SSL* ssl = SSL_new(ctx);
    if (ssl == nullptr) panic("SSL_new failed");
    bufferevent* bev = bufferevent_openssl_socket_new(loop.base(), raw, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                      BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev == nullptr) {
        SSL_free(ssl);
        panic("bufferevent_openssl_socket_new failed");
    }
    fd.release();  // The bufferevent owns it now, and the SSL.
    connection->tls_ = true;
    connection->attach(bev);
    return connection;
}

void Connection::attach(bufferevent* bev) {
    bev_ = bev;
    bufferevent_setcb(bev_, &Connection::read_callback, &Connection::write_callback, &Connection::event_callback, this);
    apply_timeouts();
}

Connection::~Connection() {
    // Freeing the bufferevent also unhooks its callbacks, deferred ones
    // included, so nothing can call back into this object.
    if (bev_ != nullptr) bufferevent_free(bev_);
}

void Connection::start() {
    if (bev_ != nullptr && !closed_) bufferevent_enable(bev_, EV_READ | EV_WRITE);
}

void Connection::apply_timeouts() {
    if (bev_ == nullptr) return;
    // Both directions: a peer that stops reading our output is as idle as
    // one that stops writing (Postfix's smtpd_timeout covers both too).
    if (idle_timeout_.count() > 0) {
        timeval tv = to_timeval(idle_timeout_);
        bufferevent_set_timeouts(bev_, &tv, &tv);
    } else {
        bufferevent_set_timeouts(bev_, nullptr, nullptr);
    }
}

void Connection::set_idle_timeout(std::chrono::milliseconds timeout) {
    idle_timeout_ = timeout;
    apply_timeouts();
}

LineStatus Connection::read_line(std::string& out) {
    out.clear();
    if (bev_ == nullptr) return LineStatus::need_more;
    evbuffer* input = bufferevent_get_input(bev_);
    for (;;) {
        evbuffer_ptr found = evbuffer_search(input, "\n", 1, nullptr);
        if (discarding_line_) {
            // Dropping the rest of an over-long line already reported.
            if (found.pos < 0) {
                evbuffer_drain(input, evbuffer_get_length(input));
                return LineStatus::need_more;
            }
            evbuffer_drain(input, static_cast<size_t>(found.pos) + 1);
            discarding_line_ = false;
            continue;
        }
        if (found.pos < 0) {
            if (evbuffer_get_length(input) <= max_line_length_) return LineStatus::need_more;
            evbuffer_drain(input, evbuffer_get_length(input));
            discarding_line_ = true;
            return LineStatus::too_long;
        }
        size_t length = static_cast<size_t>(found.pos) + 1;
        if (length > max_line_length_) {
            evbuffer_drain(input, length);
            return LineStatus::too_long;
        }
        out.resize(length);
        evbuffer_remove(input, out.data(), length);
        return LineStatus::line;
    }
}

size_t Connection::input_size() const { return bev_ ? evbuffer_get_length(bufferevent_get_input(bev_)) : 0; }

std::string Connection::read_bytes(size_t max) {
    if (bev_ == nullptr) return {};
    evbuffer* input = bufferevent_get_input(bev_);
    size_t length = std::min(max, evbuffer_get_length(input));
    std::string out(length, '\0');
    if (length > 0) evbuffer_remove(input, out.data(), length);
    return out;
}

void Connection::discard_input() {
    if (bev_ == nullptr) return;
    evbuffer* input = bufferevent_get_input(bev_);
    evbuffer_drain(input, evbuffer_get_length(input));
    discarding_line_ = false;
}

void Connection::write(std::string_view data) {
    if (closed_ || closing_after_write_ || bev_ == nullptr || data.empty()) return;
    bufferevent_write(bev_, data.data(), data.size());
}

size_t Connection::output_size() const { return bev_ ? evbuffer_get_length(bufferevent_get_output(bev_)) : 0; }

void Connection::drain_then_close(CloseReason reason) {
    if (closed_ || bev_ == nullptr) return;
    if (closing_after_write_) return;
    closing_after_write_ = true;
    drain_reason_ = reason;
    bufferevent_disable(bev_, EV_READ);
    // Writing stays enabled (and under the idle timeout) until the output is out.
    if (output_size() == 0 && pending_tls_ctx_ == nullptr && !handshaking_) finish(reason);
}

void Connection::close_after_write() { drain_then_close(CloseReason::local_close); }

void Connection::close() { finish(CloseReason::local_close); }

void Connection::finish(CloseReason reason) {
    if (closed_) return;
    closed_ = true;
    if (bev_ != nullptr) {
        bufferevent_disable(bev_, EV_READ | EV_WRITE);
        bufferevent_setcb(bev_, nullptr, nullptr, nullptr, nullptr);
        bufferevent_free(bev_);
        bev_ = nullptr;
    }
    auto callback = std::move(on_close_);
    auto tls_done = std::move(tls_done_);
    on_close_ = nullptr;
    on_readable_ = nullptr;
    on_drained_ = nullptr;
    tls_done_ = nullptr;
    pending_tls_ctx_ = nullptr;
    handshaking_ = false;
    if (tls_done) guarded("starttls", [&] { tls_done(false); });
    if (callback) guarded("close", [&] { callback(reason); });
}

void Connection::pause_reading() {
    if (bev_ != nullptr) bufferevent_disable(bev_, EV_READ);
}

void Connection::resume_reading() {
    if (bev_ == nullptr || closing_after_write_ || pending_tls_ctx_ != nullptr) return;
    bufferevent_enable(bev_, EV_READ);
    // Input may already be buffered: let the session see it.
    if (input_size() > 0) bufferevent_trigger(bev_, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
}

void Connection::start_tls(SSL_CTX* ctx, std::function<void(bool ok)> done) {
    if (closed_ || bev_ == nullptr || tls_ || closing_after_write_ || pending_tls_ctx_ != nullptr ||
        ctx == nullptr) {
        if (done) guarded("starttls", [&] { done(false); });
        return;
    }
    tls_done_ = std::move(done);
    pending_tls_ctx_ = ctx;
    // RFC 3207 §4.2: whatever the client pipelined after STARTTLS in the
    // clear must not be executed. Reading stops until the handshake starts,
    // so nothing more can be read as plaintext.
    discard_input();
    bufferevent_disable(bev_, EV_READ);
    if (output_size() == 0) begin_tls();
}

// Called once the plaintext output has been flushed: stacks an OpenSSL
// filter on the live bufferevent.
void Connection::begin_tls() {
    SSL_CTX* ctx = pending_tls_ctx_;
    pending_tls_ctx_ = nullptr;
    discard_input();
    SSL* ssl = SSL_new(ctx);
    bufferevent* filtered = ssl ? bufferevent_openssl_filter_new(loop_.base(), bev_, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                                  BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)
                                : nullptr;
    if (filtered == nullptr) {
        if (ssl) SSL_free(ssl);
        log::error("starttls: cannot create the TLS layer");
        finish(CloseReason::tls_error);
        return;
    }
    // The filter now owns the plain bufferevent and frees it with itself.
    bev_ = filtered;
    tls_ = true;
    handshaking_ = true;
    bufferevent_setcb(filtered, &Connection::read_callback, &Connection::write_callback, &Connection::event_callback,
                      this);
    apply_timeouts();
    bufferevent_enable(filtered, EV_READ | EV_WRITE);
}

std::string Connection::tls_version() const {
    if (!tls_ || bev_ == nullptr) return {};
    SSL* ssl = bufferevent_openssl_get_ssl(bev_);
    return ssl ? SSL_get_version(ssl) : "";
}

std::string Connection::tls_cipher() const {
    if (!tls_ || bev_ == nullptr) return {};
    SSL* ssl = bufferevent_openssl_get_ssl(bev_);
    const char* name = ssl ? SSL_get_cipher_name(ssl) : nullptr;
    return name ? name : "";
}

int Connection::tls_cipher_bits() const {
    if (!tls_ || bev_ == nullptr) return 0;
    SSL* ssl = bufferevent_openssl_get_ssl(bev_);
    return ssl ? SSL_get_cipher_bits(ssl, nullptr) : 0;
}

void Connection::read_callback(bufferevent*, void* self) {
    auto* connection = static_cast<Connection*>(self);
    auto keep = connection->shared_from_this();
    if (connection->closing_after_write_ || connection->pending_tls_ctx_ != nullptr) {
        connection->discard_input();
        return;
    }
    if (connection->on_readable_) {
        auto callback = connection->on_readable_;
        // A session that threw is in an unknown state: close it.
        if (!guarded("read", callback)) connection->finish(CloseReason::error);
    }
}

void Connection::write_callback(bufferevent*, void* self) {
    auto* connection = static_cast<Connection*>(self);
    auto keep = connection->shared_from_this();
    if (connection->closed_ || connection->output_size() != 0) return;
    if (connection->pending_tls_ctx_ != nullptr) {
        // The plaintext reply is out: switch this connection to TLS.
        connection->begin_tls();
        return;
    }
    if (connection->closing_after_write_ && !connection->handshaking_) {
        connection->finish(connection->drain_reason_);
        return;
    }
    if (connection->on_drained_) {
        auto callback = connection->on_drained_;
        if (!guarded("drained", callback)) connection->finish(CloseReason::error);
    }
}

void Connection::event_callback(bufferevent*, short what, void* self) {
    auto* connection = static_cast<Connection*>(self);
    auto keep = connection->shared_from_this();
    if (connection->closed_) return;
    if (what & BEV_EVENT_CONNECTED) {
        if (connection->handshaking_) {
            connection->handshaking_ = false;
            auto done = std::move(connection->tls_done_);
            connection->tls_done_ = nullptr;
            if (done && !guarded("starttls", [&] { done(true); })) connection->finish(CloseReason::error);
            if (!connection->closed_ && connection->closing_after_write_ && connection->output_size() == 0)
                connection->finish(connection->drain_reason_);
        }
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        connection->finish(CloseReason::idle_timeout);
        return;
    }
    if (connection->handshaking_ && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) {
        log::info("starttls: handshake with {} failed", connection->peer_address_);
        connection->finish(CloseReason::tls_error);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        // Deliver what is still buffered, then let queued replies go out
        // before reporting the close: a client may half-close after QUIT.
        if (connection->input_size() > 0 && connection->on_readable_ && !connection->closing_after_write_) {
            auto callback = connection->on_readable_;
            if (!guarded("read", callback)) connection->finish(CloseReason::error);
        }
        if (connection->closed_) return;
        if (connection->output_size() > 0) {
            if (!connection->closing_after_write_) connection->drain_then_close(CloseReason::peer_closed);
            return;
        }
        connection->finish(connection->closing_after_write_ ? connection->drain_reason_ : CloseReason::peer_closed);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        if (connection->closing_after_write_ && connection->drain_reason_ == CloseReason::peer_closed) {
            // The peer went away entirely while we flushed after its EOF.
            connection->finish(CloseReason::peer_closed);
            return;
        }
        connection->finish(connection->tls_ ? CloseReason::tls_error : CloseReason::error);
    }
}

WorkerPool::WorkerPool(Loop& loop, size_t threads) {
    eventfd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!eventfd_) panic("eventfd failed");
    completion_event_ = event_new(loop.base(), eventfd_.get(), EV_READ | EV_PERSIST, &WorkerPool::on_completion, this);
    if (completion_event_ == nullptr || event_add(completion_event_, nullptr) != 0) panic("event_new failed");
    if (threads == 0) threads = 1;
    for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

WorkerPool::~WorkerPool() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        queue_.clear();
    }
    wake_.notify_all();
    for (std::thread& thread : threads_) thread.join();
    event_free(completion_event_);
}

void WorkerPool::enqueue(std::function<void()> job, std::function<void()> done) {
    {
        std::lock_guard lock(mutex_);
        queue_.push_back(Task{std::move(job), std::move(done)});
        ++in_flight_;
    }
    wake_.notify_one();
}

size_t WorkerPool::pending() const {
    std::lock_guard lock(mutex_);
    return in_flight_;
}

void WorkerPool::work() {
    for (;;) {
        Task task;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            task = std::move(queue_.front());
            queue_.pop_front();
        }
        bool succeeded = false;
        guarded("worker", [&] {
            task.job();
            succeeded = true;
        });
        {
            std::lock_guard lock(mutex_);
            // A job that threw has no result: its `done` is dropped (logged above).
            completed_.push_back(succeeded ? std::move(task.done) : std::function<void()>());
        }
        uint64_t one = 1;
        ssize_t ignored = ::write(eventfd_.get(), &one, sizeof one);
        (void)ignored;
    }
}

void WorkerPool::on_completion(int fd, short, void* self) {
    auto* pool = static_cast<WorkerPool*>(self);
    uint64_t count = 0;
    ssize_t ignored = ::read(fd, &count, sizeof count);
    (void)ignored;
    std::deque<std::function<void()>> ready;
    {
        std::lock_guard lock(pool->mutex_);
        ready.swap(pool->completed_);
        pool->in_flight_ -= ready.size();
    }
    std::weak_ptr<bool> alive = pool->alive_;
    for (auto& done : ready) {
        if (alive.expired()) return;  // A `done` destroyed the pool: drop the rest.
        if (done) guarded("worker completion", done);
    }
}

}  // namespace facteur::event
