// Framed request/response between daemons over Unix stream sockets, with
// SO_PEERCRED checks (DESIGN §4).
//
// Wire format of a frame: a 4-byte big-endian length N of what follows
// (N <= max_frame), 1 byte version (= 1), then zero or more attributes, each
// `u32 BE name length, name bytes, u32 BE value length, value bytes`.
// Binary-safe: a value may hold CR, LF or NUL and can never forge a field.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libmail/event.hpp"
#include "libmail/result.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::ipc {

inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kDefaultMaxFrame = 1 << 20;
inline constexpr size_t kMaxNameLength = 256;

struct Frame {
    std::vector<std::pair<std::string, std::string>> attributes;

    Frame& add(std::string name, std::string value) {
        attributes.emplace_back(std::move(name), std::move(value));
        return *this;
    }
    // The first attribute with this name.
    std::optional<std::string_view> get(std::string_view name) const;
    std::vector<std::string_view> get_all(std::string_view name) const;
};

std::string encode(const Frame& frame);

// The reply convention of the control and admin sockets: `status` = ok |
// error, and `error` = the reason. `peer` names the other side in errors
// about malformed replies ("master", "authd").
Frame ok_reply();
Frame error_reply(std::string_view message);
Frame status_reply(const Status& status);
Status reply_status(const Frame& reply, std::string_view peer);

enum class DecodeStatus { complete, need_more, error };
// Pure: decodes one frame from the front of `buffer`; on complete, `consumed`
// is its size on the wire.
DecodeStatus decode(std::string_view buffer, Frame& out, size_t& consumed, std::string& error,
                    size_t max_frame = kDefaultMaxFrame);

struct PeerCredentials {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
};
Result<PeerCredentials> peer_credentials(int fd);

// Blocking client for the CLI and tests; every read and write is bounded by
// the timeout.
class Client {
public:
    static Result<Client> connect(const std::string& socket_path,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10));
    // After a failure (timeout, lost connection, garbled reply) the Client
    // is unusable: every later call fails; connect again.
    Result<Frame> call(const Frame& request);

private:
    Result<Frame> exchange(const Frame& request);
    Client(UniqueFd fd, std::chrono::milliseconds timeout) : fd_(std::move(fd)), timeout_(timeout) {}
    UniqueFd fd_;
    std::chrono::milliseconds timeout_;
    std::string buffer_;
};

// Async server on the event loop: one request -> one reply, answered in
// order per connection even when the handler replies later (e.g. from a
// WorkerPool `done`). The Responder must be called exactly once; calling it
// after the client left is a no-op, and dropping it uncalled closes that
// client's connection (logged) rather than leaving it hanging. Peers refused
// by `check`, bad frames and 5 idle minutes close the connection (logged).
// At most kMaxPipelined requests per connection await replies; reading from
// that client pauses until some are answered.
class Server {
public:
    using Responder = std::function<void(const Frame& reply)>;
    using Handler = std::function<void(const Frame& request, const PeerCredentials& peer, Responder respond)>;
    using PeerCheck = std::function<bool(const PeerCredentials&)>;

    Server(event::Loop& loop, UniqueFd listening_fd, Handler handler, PeerCheck check = {});
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    static constexpr size_t kMaxPipelined = 64;
    size_t connections() const { return sessions_.size(); }

private:
    struct Session;
    void accept(UniqueFd fd);
    void process(const std::shared_ptr<Session>& session);
    void flush(Session& session);

    event::Loop& loop_;
    Handler handler_;
    PeerCheck check_;
    std::unique_ptr<event::Listener> listener_;
    std::map<Session*, std::shared_ptr<Session>> sessions_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Async client for daemons: connects lazily (non-blocking), queues calls,
// matches replies in order; a lost connection fails every call in flight and
// the next call reconnects. A call not answered within `timeout` fails, and
// so does everything queued behind it on that connection (which is dropped:
// a late reply could not be matched any more). `done` always runs from the
// loop, never from inside call(); calls still pending when the AsyncClient is
// destroyed are dropped without their `done` running.
class AsyncClient {
public:
    using Done = std::function<void(Result<Frame>)>;
    AsyncClient(event::Loop& loop, std::string socket_path,
                std::chrono::milliseconds timeout = std::chrono::seconds(30));
    ~AsyncClient();
    AsyncClient(const AsyncClient&) = delete;
    AsyncClient& operator=(const AsyncClient&) = delete;

    void call(const Frame& request, Done done);

    size_t in_flight() const { return in_flight_.size(); }

private:
    void fail_all(const std::string& why);
    void drop_connection();
    void on_readable();
    void on_timer();

    event::Loop& loop_;
    std::string socket_path_;
    std::chrono::milliseconds timeout_;
    std::shared_ptr<event::Connection> connection_;
    std::string buffer_;
    std::deque<std::pair<Done, std::chrono::steady_clock::time_point>> in_flight_;
    event::Timer timeout_timer_;
    std::deque<std::pair<Done, std::string>> deferred_failures_;
    event::Timer deferred_timer_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace facteur::ipc
