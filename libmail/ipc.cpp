// ipc frames, blocking client, async server and client.
#include "libmail/ipc.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "libmail/log.hpp"

namespace facteur::ipc {
namespace {

constexpr auto kServerIdleTimeout = std::chrono::minutes(5);

void put_u32(std::string& out, uint32_t value) {
    out += static_cast<char>((value >> 24) & 0xff);
    out += static_cast<char>((value >> 16) & 0xff);
    out += static_cast<char>((value >> 8) & 0xff);
    out += static_cast<char>(value & 0xff);
}

uint32_t get_u32(std::string_view data) {
    auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(data[i])); };
    return (byte(0) << 24) | (byte(1) << 16) | (byte(2) << 8) | byte(3);
}

// Takes whole frames off the front of `buffer`.
DecodeStatus take_frame(std::string& buffer, Frame& frame, std::string& error) {
    size_t consumed = 0;
    DecodeStatus status = decode(buffer, frame, consumed, error);
    if (status == DecodeStatus::complete) buffer.erase(0, consumed);
    return status;
}

}  // namespace

std::optional<std::string_view> Frame::get(std::string_view name) const {
    for (const auto& [key, value] : attributes)
        if (key == name) return std::string_view(value);
    return std::nullopt;
}

std::vector<std::string_view> Frame::get_all(std::string_view name) const {
    std::vector<std::string_view> out;
    for (const auto& [key, value] : attributes)
        if (key == name) out.emplace_back(value);
    return out;
}

Frame ok_reply() {
    Frame frame;
    frame.add("status", "ok");
    return frame;
}

Frame error_reply(std::string_view message) {
    Frame frame;
    frame.add("status", "error");
    frame.add("error", std::string(message));
    return frame;
}

Frame status_reply(const Status& status) { return status ? ok_reply() : error_reply(status.error()); }

Status reply_status(const Frame& reply, std::string_view peer) {
    auto value = reply.get("status");
    if (!value) return make_error(fmt::format("malformed reply from {}: no status", peer));
    if (*value == "ok") return {};
    if (*value == "error") {
        auto message = reply.get("error");
        return make_error(message && !message->empty() ? std::string(*message)
                                                       : fmt::format("{} reported an error", peer));
    }
    return make_error(fmt::format("malformed reply from {}: status '{}'", peer, *value));
}

std::string encode(const Frame& frame) {
    std::string body;
    body += static_cast<char>(kVersion);
    for (const auto& [name, value] : frame.attributes) {
        put_u32(body, static_cast<uint32_t>(name.size()));
        body += name;
        put_u32(body, static_cast<uint32_t>(value.size()));
        body += value;
    }
    std::string out;
    out.reserve(body.size() + 4);
    put_u32(out, static_cast<uint32_t>(body.size()));
    out += body;
    return out;
}

DecodeStatus decode(std::string_view buffer, Frame& out, size_t& consumed, std::string& error, size_t max_frame) {
    out.attributes.clear();
    if (buffer.size() < 4) return DecodeStatus::need_more;
    uint32_t length = get_u32(buffer);
    if (length == 0 || length > max_frame) {
        error = fmt::format("frame length {} outside 1..{}", length, max_frame);
        return DecodeStatus::error;
    }
    if (buffer.size() - 4 < length) return DecodeStatus::need_more;
    std::string_view body = buffer.substr(4, length);
    if (static_cast<uint8_t>(body[0]) != kVersion) {
        error = fmt::format("unknown frame version {}", static_cast<unsigned>(static_cast<uint8_t>(body[0])));
        return DecodeStatus::error;
    }
    size_t position = 1;
    while (position < body.size()) {
        if (body.size() - position < 4) {
            error = "truncated attribute name length";
            return DecodeStatus::error;
        }
        uint32_t name_length = get_u32(body.substr(position));
        position += 4;
        if (name_length == 0 || name_length > kMaxNameLength || name_length > body.size() - position) {
            error = "bad attribute name length";
            return DecodeStatus::error;
        }
        std::string name(body.substr(position, name_length));
        position += name_length;
        if (body.size() - position < 4) {
            error = "truncated attribute value length";
            return DecodeStatus::error;
        }
        uint32_t value_length = get_u32(body.substr(position));
        position += 4;
        if (value_length > body.size() - position) {
            error = "attribute value longer than the frame";
            return DecodeStatus::error;
        }
        out.attributes.emplace_back(std::move(name), std::string(body.substr(position, value_length)));
        position += value_length;
    }
    consumed = 4 + length;
    return DecodeStatus::complete;
}

Result<PeerCredentials> peer_credentials(int fd) {
    ucred credentials{};
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0)
        return make_error(fmt::format("SO_PEERCRED: {}", std::strerror(errno)));
    return PeerCredentials{credentials.pid, credentials.uid, credentials.gid};
}

Result<Client> Client::connect(const std::string& socket_path, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        // Non-blocking so a full listen backlog cannot hold us past the
        // timeout; Linux reports it as EAGAIN, so retry until the deadline.
        auto fd = event::connect_unix_nonblocking(socket_path);
        if (fd) return Client(std::move(fd).value(), timeout);
        if (fd.error().find("server busy") == std::string::npos || std::chrono::steady_clock::now() >= deadline)
            return make_error(fd.error());
        poll(nullptr, 0, 10);
    }
}

Result<Frame> Client::call(const Frame& request) {
    if (!fd_) return make_error("ipc connection is no longer usable after an earlier failure");
    Result<Frame> reply = exchange(request);
    // After a timeout or a garbled reply the stream is out of step: a later
    // call could read this call's reply.
    if (!reply) fd_.reset();
    return reply;
}

Result<Frame> Client::exchange(const Frame& request) {
    std::string data = encode(request);
    if (data.size() - 4 > kDefaultMaxFrame) return make_error("request frame too large");
    auto deadline = std::chrono::steady_clock::now() + timeout_;
    auto wait = [&](short events) -> Status {
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return make_error("timed out");
            pollfd poller{fd_.get(), events, 0};
            int ready = poll(&poller, 1, static_cast<int>(left.count()));
            if (ready > 0) return {};
            if (ready < 0 && errno != EINTR) return make_error(fmt::format("poll: {}", std::strerror(errno)));
        }
    };
    size_t sent = 0;
    while (sent < data.size()) {
        if (Status s = wait(POLLOUT); !s) return make_error(s.error());
        ssize_t n = send(fd_.get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) return make_error(fmt::format("send: {}", std::strerror(errno)));
        sent += static_cast<size_t>(n);
    }
    for (;;) {
        Frame reply;
        std::string error;
        DecodeStatus status = take_frame(buffer_, reply, error);
        if (status == DecodeStatus::complete) return reply;
        if (status == DecodeStatus::error) return make_error("malformed reply: " + error);
        if (Status s = wait(POLLIN); !s) return make_error(s.error());
        char chunk[65536];
        ssize_t n = recv(fd_.get(), chunk, sizeof chunk, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) return make_error(fmt::format("recv: {}", std::strerror(errno)));
        if (n == 0) return make_error("connection closed before the reply");
        buffer_.append(chunk, static_cast<size_t>(n));
    }
}

// One client connection of a Server. Replies leave in request order: each
// request gets a slot, and answered slots are flushed from the front.
struct Server::Session {
    std::shared_ptr<event::Connection> connection;
    PeerCredentials peer;
    std::string buffer;
    std::deque<std::optional<std::string>> replies;
    bool paused = false;
};

// Shared by every copy of one Responder: notices a reply never given.
struct ReplyGuard {
    std::weak_ptr<event::Connection> connection;
    bool answered = false;
    ~ReplyGuard() {
        if (answered) return;
        if (auto live = connection.lock(); live && !live->closed()) {
            log::error("ipc: a request handler dropped its responder without replying; closing the connection");
            live->close();
        }
    }
};

Server::Server(event::Loop& loop, UniqueFd listening_fd, Handler handler, PeerCheck check)
    : loop_(loop), handler_(std::move(handler)), check_(std::move(check)) {
    listener_ = std::make_unique<event::Listener>(
        loop, std::move(listening_fd),
        [this](UniqueFd client, const sockaddr_storage&, socklen_t) { accept(std::move(client)); });
}

Server::~Server() {
    *alive_ = false;
    auto sessions = std::move(sessions_);
    sessions_.clear();
    for (auto& [raw, session] : sessions) {
        session->connection->on_close(nullptr);
        session->connection->close();
    }
}

void Server::accept(UniqueFd fd) {
    auto peer = peer_credentials(fd.get());
    if (!peer) {
        log::warning("ipc: {}; closing", peer.error());
        return;
    }
    if (check_ && !check_(*peer)) {
        log::warning("ipc: refused peer pid={} uid={} gid={}", peer->pid, peer->uid, peer->gid);
        return;
    }
    auto session = std::make_shared<Session>();
    session->peer = *peer;
    session->connection = event::Connection::create(loop_, std::move(fd));
    Session* raw = session.get();
    sessions_[raw] = session;
    std::weak_ptr<Session> weak = session;
    std::weak_ptr<bool> alive = alive_;
    session->connection->set_idle_timeout(kServerIdleTimeout);
    session->connection->on_close([this, raw, alive](event::CloseReason reason) {
        if (alive.expired()) return;
        if (reason == event::CloseReason::idle_timeout) log::info("ipc: closing an idle connection");
        sessions_.erase(raw);
    });
    session->connection->on_readable([this, weak, alive] {
        auto session = weak.lock();
        if (!session || alive.expired()) return;
        // Bounded: nothing is read while paused, and a frame in progress
        // is at most max_frame (checked by decode on its header).
        session->buffer += session->connection->read_bytes(kDefaultMaxFrame + 4);
        process(session);
    });
    session->connection->start();
}

void Server::process(const std::shared_ptr<Session>& session) {
    std::weak_ptr<bool> alive = alive_;
    while (!session->connection->closed()) {
        if (session->replies.size() >= kMaxPipelined) {
            if (!session->paused) {
                session->paused = true;
                session->connection->pause_reading();
            }
            return;
        }
        Frame request;
        std::string error;
        DecodeStatus status = take_frame(session->buffer, request, error);
        if (status == DecodeStatus::need_more) {
            // Input left in the connection (e.g. while paused) is not
            // announced again: pull it here, one bounded chunk at a time.
            if (session->connection->input_size() == 0) return;
            session->buffer += session->connection->read_bytes(kDefaultMaxFrame + 4);
            continue;
        }
        if (status == DecodeStatus::error) {
            log::warning("ipc: bad frame from pid={} uid={}: {}; closing", session->peer.pid, session->peer.uid,
                         error);
            session->connection->close();
            return;
        }
        session->replies.emplace_back();
        // References to deque elements survive push_back and pop_front of
        // other elements, so the slot stays valid until it is flushed.
        std::optional<std::string>* slot = &session->replies.back();
        auto guard = std::make_shared<ReplyGuard>();
        guard->connection = session->connection;
        std::weak_ptr<Session> weak = session;
        Responder respond = [this, weak, alive, slot, guard](const Frame& reply) {
            if (guard->answered) {
                log::error("ipc: a request handler replied twice; ignoring the second reply");
                return;
            }
            guard->answered = true;
            auto session = weak.lock();
            if (!session || alive.expired() || session->connection->closed()) return;
            *slot = encode(reply);
            flush(*session);
            if (session->paused && session->replies.size() < kMaxPipelined) {
                session->paused = false;
                session->connection->resume_reading();
                process(session);
            }
        };
        handler_(request, session->peer, std::move(respond));
    }
}

void Server::flush(Session& session) {
    while (!session.replies.empty() && session.replies.front()) {
        session.connection->write(*session.replies.front());
        session.replies.pop_front();
    }
}

AsyncClient::AsyncClient(event::Loop& loop, std::string socket_path, std::chrono::milliseconds timeout)
    : loop_(loop),
      socket_path_(std::move(socket_path)),
      timeout_(timeout),
      timeout_timer_(loop, [this] { on_timer(); }),
      deferred_timer_(loop, [this] {
          auto failures = std::move(deferred_failures_);
          deferred_failures_.clear();
          std::weak_ptr<bool> alive = alive_;
          for (auto& [done, why] : failures) {
              if (alive.expired()) return;
              done(make_error(why));
          }
      }) {}

AsyncClient::~AsyncClient() {
    *alive_ = false;
    alive_.reset();
    if (connection_) {
        connection_->on_close(nullptr);
        connection_->close();
    }
}

void AsyncClient::on_timer() {
    auto now = std::chrono::steady_clock::now();
    if (in_flight_.empty()) return;
    if (in_flight_.front().second <= now) {
        // A reply that never came: later replies could no longer be matched,
        // so drop the connection and fail everything on it.
        log::warning("ipc: no reply from {} within {} ms", socket_path_, timeout_.count());
        drop_connection();
        fail_all("timed out waiting for a reply from " + socket_path_);
        return;
    }
    timeout_timer_.start(std::chrono::duration_cast<std::chrono::milliseconds>(in_flight_.front().second - now) +
                         std::chrono::milliseconds(1));
}

void AsyncClient::drop_connection() {
    if (!connection_) return;
    auto connection = std::move(connection_);
    connection_.reset();
    connection->on_close(nullptr);
    connection->close();
    buffer_.clear();
}

void AsyncClient::fail_all(const std::string& why) {
    auto pending = std::move(in_flight_);
    in_flight_.clear();
    timeout_timer_.cancel();
    std::weak_ptr<bool> alive = alive_;
    for (auto& [done, deadline] : pending) {
        // A `done` may destroy this client; the rest are then dropped.
        if (alive.expired()) return;
        done(make_error(why));
    }
}

void AsyncClient::call(const Frame& request, Done done) {
    std::string data = encode(request);
    if (data.size() - 4 > kDefaultMaxFrame) {
        deferred_failures_.emplace_back(std::move(done), "request frame too large");
        deferred_timer_.start(std::chrono::milliseconds(0));
        return;
    }
    if (!connection_) {
        auto fd = event::connect_unix_nonblocking(socket_path_);
        if (!fd) {
            deferred_failures_.emplace_back(std::move(done), fd.error());
            deferred_timer_.start(std::chrono::milliseconds(0));
            return;
        }
        buffer_.clear();
        connection_ = event::Connection::create(loop_, std::move(fd).value());
        std::weak_ptr<bool> alive = alive_;
        connection_->on_readable([this, alive] {
            if (alive.expired()) return;
            on_readable();
        });
        connection_->on_close([this, alive](event::CloseReason) {
            if (alive.expired()) return;
            connection_.reset();
            buffer_.clear();
            fail_all("connection to " + socket_path_ + " lost");
        });
        connection_->start();
    }
    in_flight_.emplace_back(std::move(done), std::chrono::steady_clock::now() + timeout_);
    if (!timeout_timer_.pending()) timeout_timer_.start(timeout_);
    connection_->write(data);
}

void AsyncClient::on_readable() {
    if (!connection_) return;
    buffer_ += connection_->read_bytes(kDefaultMaxFrame + 4);
    std::weak_ptr<bool> alive = alive_;
    for (;;) {
        Frame reply;
        std::string error;
        DecodeStatus status = take_frame(buffer_, reply, error);
        if (status == DecodeStatus::need_more) {
            // More may be buffered than one read_bytes took.
            if (connection_ && connection_->input_size() > 0) {
                buffer_ += connection_->read_bytes(kDefaultMaxFrame + 4);
                continue;
            }
            return;
        }
        if (status == DecodeStatus::error || in_flight_.empty()) {
            log::warning("ipc: {} sent {}; dropping the connection", socket_path_,
                         status == DecodeStatus::error ? error : std::string("an unexpected reply"));
            drop_connection();
            fail_all("bad reply from " + socket_path_);
            return;
        }
        auto done = std::move(in_flight_.front().first);
        in_flight_.pop_front();
        if (in_flight_.empty()) timeout_timer_.cancel();
        done(std::move(reply));
        if (alive.expired() || !connection_) return;
    }
}

}  // namespace facteur::ipc
