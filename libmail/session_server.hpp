// The listening side every protocol daemon shares (smtpd, pop3d, later
// imapd): accept on inherited sockets, plain or implicit TLS, enforce the
// per-process and per-client-IP session limits with a protocol-specific
// refusal at the greeting, keep the sessions alive while they run, and shut
// them all down in order (DESIGN §6: one event loop per process).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "libmail/event.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::tls {
class Context;
}

namespace facteur::event {

// What a SessionServer needs of a protocol session.
class ServerSession {
public:
    virtual ~ServerSession();
    // Sends the greeting and starts reading; `on_finished` runs once, when
    // the session is over (the server then drops it).
    virtual void start(std::function<void()> on_finished) = 0;
    // Server shutdown: say goodbye in the protocol's words and close.
    virtual void shutdown() = 0;
};

class SessionServer {
public:
    struct Options {
        size_t session_limit = 1000;
        size_t client_connection_limit = 50;
        // The reply (with its CRLF) to a connection over session_limit, and
        // to one over client_connection_limit from `address`.
        std::function<std::string()> too_many_sessions;
        std::function<std::string(const std::string& address)> too_many_from_address;
        // How logs name a client: "unknown[1.2.3.4]" for smtpd, the bare
        // address elsewhere.
        std::function<std::string(const std::string& address)> client_name;
    };
    using SessionFactory = std::function<std::shared_ptr<ServerSession>(std::shared_ptr<Connection>)>;

    SessionServer(Loop& loop, Options options);
    ~SessionServer();
    SessionServer(const SessionServer&) = delete;
    SessionServer& operator=(const SessionServer&) = delete;

    // Accepts on `fd`; each connection (TLS from the first byte when
    // `implicit_tls` is set, RFC 8314) within the limits becomes a session
    // made by `make_session`.
    void listen(UniqueFd fd, SSL_CTX* implicit_tls, SessionFactory make_session);
    // Stops accepting and shuts every session down; `done` runs once the
    // last session has finished (or at once when there is none).
    void shutdown(std::function<void()> done);

    size_t sessions() const { return sessions_.size(); }

private:
    void accept(UniqueFd fd, SSL_CTX* implicit_tls, const SessionFactory& make_session);
    void refuse(std::shared_ptr<Connection> connection, std::string reply);
    void finished(uint64_t id, const std::string& address);

    Loop& loop_;
    Options options_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::map<uint64_t, std::shared_ptr<ServerSession>> sessions_;
    std::unordered_map<std::string, size_t> per_address_;
    // Connections refused at the greeting, kept until the reply is out.
    std::map<uint64_t, std::shared_ptr<Connection>> refused_;
    uint64_t next_id_ = 1;
    std::function<void()> on_shutdown_done_;
    bool shutting_down_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// The signal wiring of a protocol daemon: SIGTERM or SIGINT shuts the
// sessions down once (logging how many), and the loop stops when they are
// gone or after `grace`; SIGHUP reloads the TLS certificate, when there is
// one, keeping the old pair if the new files are bad.
class ServerSignals {
public:
    ServerSignals(Loop& loop, std::function<size_t()> sessions,
                  std::function<void(std::function<void()>)> shutdown, std::chrono::milliseconds grace,
                  tls::Context* tls, std::string cert_file);

private:
    void stop();
    void reload();

    Loop& loop_;
    std::function<size_t()> sessions_;
    std::function<void(std::function<void()>)> shutdown_;
    std::chrono::milliseconds grace_;
    tls::Context* tls_;
    std::string cert_file_;
    bool stopping_ = false;
    Timer stop_timer_;
    Signal on_term_, on_int_, on_hup_;
};

}  // namespace facteur::event
