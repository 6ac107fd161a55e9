// event::Connection: a bufferevent with line limits, idle timeouts,
// STARTTLS and implicit TLS.
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
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "libmail/event_internal.hpp"
#include "libmail/log.hpp"
#include "libmail/panic.hpp"
#include "libmail/tls.hpp"

namespace facteur::event {
using detail::describe;
using detail::error_text;
using detail::guarded;
using detail::to_timeval;

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
    // Until BEV_EVENT_CONNECTED: an EOF or error now is a failed handshake
    // (close at once: the greeting queued meanwhile can never go out).
    connection->handshaking_ = true;
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
    // Nothing queued can reach a peer that has not finished the TLS
    // handshake (implicit TLS, or right after STARTTLS): waiting for the
    // output to drain would keep the connection forever. Close now.
    if (handshaking_) return finish(reason);
    // Writing stays enabled (and under the idle timeout) until the output is out.
    if (output_size() == 0 && pending_tls_ctx_ == nullptr) finish(reason);
}

void Connection::close_after_write() { drain_then_close(CloseReason::local_close); }

void Connection::close() { finish(CloseReason::local_close); }

void Connection::finish(CloseReason reason) {
    if (closed_) return;
    closed_ = true;
    if (bev_ != nullptr) {
        // After STARTTLS, bev_ is an OpenSSL filter: "drained" means its
        // output was encrypted into the socket bufferevent below, which may
        // not have written it yet. A graceful close pushes that last bit
        // (typically the final reply) to the kernel before freeing; what
        // does not fit in the socket buffer is dropped with the connection.
        if (closing_after_write_ && reason == drain_reason_) {
            if (bufferevent* below = bufferevent_get_underlying(bev_)) {
                // Encrypt whatever the filter still holds into the layer below.
                bufferevent_flush(bev_, EV_WRITE, BEV_FLUSH);
                // The bufferevent keeps its output's start frozen (no
                // evbuffer_write or copyout): read it in place with peek.
                evbuffer* pending = bufferevent_get_output(below);
                evbuffer_iovec chunks[16];
                int count = evbuffer_peek(pending, -1, nullptr, chunks, 16);
                for (int i = 0; i < std::min(count, 16); ++i) {
                    const char* data = static_cast<const char*>(chunks[i].iov_base);
                    size_t left = chunks[i].iov_len;
                    while (left > 0) {
                        ssize_t n = ::send(fd_, data, left, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (n <= 0) break;
                        data += n;
                        left -= static_cast<size_t>(n);
                    }
                    if (left > 0) break;
                }
            }
        }
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

void Connection::start_tls_client(SSL_CTX* ctx, std::string server_name, std::function<void(bool ok)> done) {
    if (closed_ || bev_ == nullptr || tls_ || closing_after_write_ || pending_tls_ctx_ != nullptr ||
        ctx == nullptr) {
        tls_error_ = "cannot start TLS on this connection";
        if (done) guarded("starttls", [&] { done(false); });
        return;
    }
    tls_client_ = true;
    tls_server_name_ = std::move(server_name);
    tls_error_.clear();
    tls_done_ = std::move(done);
    pending_tls_ctx_ = ctx;
    // RFC 3207 §4.2 applies both ways: nothing the server sent in the clear
    // after its 220 may be taken as part of the TLS session.
    discard_input();
    bufferevent_disable(bev_, EV_READ);
    if (output_size() == 0) begin_tls();
}

// Called once the plaintext output has been flushed: stacks an OpenSSL
// filter on the live bufferevent (server or client side).
void Connection::begin_tls() {
    SSL_CTX* ctx = pending_tls_ctx_;
    pending_tls_ctx_ = nullptr;
    discard_input();
    ERR_clear_error();
    SSL* ssl = SSL_new(ctx);
    if (ssl != nullptr && tls_client_) {
        if (Status prepared = tls::prepare_client(ssl, tls_server_name_); !prepared) {
            SSL_free(ssl);
            tls_error_ = prepared.error();
            finish(CloseReason::tls_error);
            return;
        }
    }
    bufferevent* filtered =
        ssl ? bufferevent_openssl_filter_new(loop_.base(), bev_, ssl,
                                             tls_client_ ? BUFFEREVENT_SSL_CONNECTING : BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)
            : nullptr;
    if (filtered == nullptr) {
        if (ssl) SSL_free(ssl);
        log::error("starttls: cannot create the TLS layer");
        tls_error_ = "cannot create the TLS layer";
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

// Client side: keeps why a handshake failed (the verification error first,
// it says more than OpenSSL's generic "certificate verify failed") and what
// the peer showed, before the SSL object goes away with the bufferevent.
void Connection::record_tls_result(bool failed) {
    if (!tls_client_ || bev_ == nullptr) return;
    SSL* ssl = bufferevent_openssl_get_ssl(bev_);
    if (ssl == nullptr) return;
    tls_verify_result_ = SSL_get_verify_result(ssl);
    tls_peer_certificate_ = SSL_get0_peer_certificate(ssl) != nullptr;
    if (!failed) return;
    std::string openssl;
    while (unsigned long code = bufferevent_get_openssl_error(bev_)) {
        char buffer[256];
        ERR_error_string_n(code, buffer, sizeof buffer);
        if (!openssl.empty()) openssl += "; ";
        openssl += buffer;
    }
    if (tls_verify_result_ != X509_V_OK &&
        (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) != 0) {
        tls_error_ = fmt::format("certificate verification failed: {}",
                                 X509_verify_cert_error_string(tls_verify_result_));
    } else if (!openssl.empty()) {
        tls_error_ = openssl;
    } else {
        tls_error_ = "connection closed during the TLS handshake";
    }
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
            connection->record_tls_result(false);
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
        connection->record_tls_result(true);
        if (connection->tls_client_)
            log::info("starttls: handshake with {} failed: {}", connection->peer_address_, connection->tls_error_);
        else
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
        // With BEV_EVENT_ERROR as well (deferred callbacks merge a failed
        // write, EPIPE after the peer's RST, with the EOF of the same turn),
        // libevent has stopped writing: the output can never drain, so
        // waiting for it would leave the connection hanging until a timeout.
        if (connection->output_size() > 0 && !(what & BEV_EVENT_ERROR)) {
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

}  // namespace facteur::event
