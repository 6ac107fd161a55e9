// event::connect_tcp: a non-blocking outgoing TCP connect on the loop, with a
// source address and a deadline (relayd's connections to remote MX hosts).
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "libmail/event.hpp"
#include "libmail/event_internal.hpp"
#include "libmail/panic.hpp"

namespace facteur::event {
using detail::error_text;
using detail::guarded;
using detail::to_timeval;

namespace {

// Numeric address (with optional [] around IPv6) into a sockaddr.
bool parse_numeric(std::string_view text, uint16_t port, sockaddr_storage& out, socklen_t& length) {
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
    std::string host(text);
    if (host.find('\0') != std::string::npos) return false;
    out = {};
    auto* in = reinterpret_cast<sockaddr_in*>(&out);
    if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        length = sizeof(sockaddr_in);
        return true;
    }
    out = {};
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out);
    if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        length = sizeof(sockaddr_in6);
        return true;
    }
    return false;
}

}  // namespace

TcpConnect::TcpConnect(Loop& loop, Done done) : loop_(loop), done_(std::move(done)) {}

TcpConnect::~TcpConnect() {
    if (event_ != nullptr) event_free(event_);
}

std::unique_ptr<TcpConnect> connect_tcp(Loop& loop, std::string_view address, uint16_t port,
                                        std::string_view bind_address, std::chrono::milliseconds timeout,
                                        TcpConnect::Done done) {
    auto attempt = std::make_unique<TcpConnect>(loop, std::move(done));
    attempt->begin(address, port, bind_address, timeout);
    return attempt;
}

void TcpConnect::begin(std::string_view address, uint16_t port, std::string_view bind_address,
                       std::chrono::milliseconds timeout) {
    sockaddr_storage target{};
    socklen_t target_length = 0;
    if (!parse_numeric(address, port, target, target_length))
        return fail_later(fmt::format("invalid address {}", log::printable(address)));
    fd_ = UniqueFd(socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd_) return fail_later(fmt::format("socket: {}", error_text(errno)));
    if (!bind_address.empty()) {
        sockaddr_storage source{};
        socklen_t source_length = 0;
        if (!parse_numeric(bind_address, 0, source, source_length) || source.ss_family != target.ss_family)
            return fail_later(fmt::format("invalid source address {}", log::printable(bind_address)));
        if (bind(fd_.get(), reinterpret_cast<sockaddr*>(&source), source_length) != 0)
            return fail_later(fmt::format("cannot bind to {}: {}", log::printable(bind_address), error_text(errno)));
    }
    if (connect(fd_.get(), reinterpret_cast<sockaddr*>(&target), target_length) != 0 && errno != EINPROGRESS)
        return fail_later(error_text(errno));
    // Connected at once (loopback) or in progress: write readiness tells.
    event_ = event_new(loop_.base(), fd_.get(), EV_WRITE, &TcpConnect::on_event, this);
    if (event_ == nullptr) panic("event_new failed");
    timeval tv = to_timeval(timeout);
    event_add(event_, timeout.count() > 0 ? &tv : nullptr);
}

// Reports an error on a later loop turn, so `done` never runs inside
// connect_tcp (its caller may not be ready for a re-entrant callback).
void TcpConnect::fail_later(std::string error) {
    error_ = std::move(error);
    fd_.reset();
    event_ = event_new(loop_.base(), -1, 0, &TcpConnect::on_event, this);
    if (event_ == nullptr) panic("event_new failed");
    timeval now{};
    event_add(event_, &now);
}

void TcpConnect::on_event(int, short what, void* self) {
    auto* attempt = static_cast<TcpConnect*>(self);
    // The callback may destroy this object: take what it needs first.
    auto done = std::move(attempt->done_);
    attempt->done_ = nullptr;
    if (!done) return;
    Result<UniqueFd> result = make_error("Connection timed out");
    if (!attempt->error_.empty()) {
        result = make_error(attempt->error_);
    } else if (what & EV_TIMEOUT) {
        attempt->fd_.reset();
    } else {
        int error = 0;
        socklen_t length = sizeof error;
        if (getsockopt(attempt->fd_.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
        if (error != 0) {
            attempt->fd_.reset();
            result = make_error(error_text(error));
        } else {
            result = std::move(attempt->fd_);
        }
    }
    guarded("connect", [&] { done(std::move(result)); });
}

}  // namespace facteur::event
