// libevent RAII wrappers: loop, timers, signals, socket helpers, listeners.
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

#include "libmail/event_internal.hpp"
#include "libmail/log.hpp"
#include "libmail/panic.hpp"

namespace facteur::event {
using detail::describe;
using detail::error_text;
using detail::guarded;
using detail::to_timeval;

namespace {

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

}  // namespace facteur::event
