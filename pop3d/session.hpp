// One POP3 server session (RFC 1939 with CAPA, RFC 2449; STLS, RFC 2595;
// AUTH, RFC 5034) as an explicit state machine: the states, the table of
// commands with the states they are allowed in, and the input loop that
// keeps PIPELINING (RFC 2449 §6.6) replies in order while a command waits
// for authd, the worker pool or a message being streamed out.
// Handlers: session_auth.cpp (AUTHORIZATION), session_transaction.cpp
// (TRANSACTION and UPDATE).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/auth_lookup.hpp"
#include "libmail/event.hpp"
#include "libmail/session_server.hpp"
#include "libmail/mailbox.hpp"
#include "libmail/sasl.hpp"
#include "libmail/tls.hpp"
#include "pop3d/encoder.hpp"
#include "pop3d/pop3_command.hpp"
#include "pop3d/settings.hpp"

namespace facteur::pop3d {

// What every session of a process shares; owned by main (or a test).
struct SessionServices {
    const Settings& settings;
    event::Loop& loop;
    event::WorkerPool& pool;
    auth_lookup::Client& auth;
    const tls::Context* tls;  // null: no TLS configured
};

// A user's INBOX snapshot and the RFC 1939 §8 session lock, held together:
// the lock must outlive every use of the mailbox, including the commit that
// may still run on a worker thread after the client has gone.
struct OpenMailbox {
    std::unique_ptr<store::Mailbox> mailbox;
    store::SessionLock lock;
};

class Session : public event::ServerSession, public std::enable_shared_from_this<Session> {
public:
    enum class State {
        authorization,  // RFC 1939 §4 (also right after STLS)
        sasl,           // an AUTH exchange waits for the client's next response
        transaction,    // RFC 1939 §5: logged in, the maildrop is ours
        update,         // RFC 1939 §6: QUIT received, the commit runs
        closing,        // the last reply is going out, or the client is gone
    };

    Session(SessionServices services, std::shared_ptr<event::Connection> connection, PortKind kind);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Sends the greeting and starts reading. `on_finished` runs once, when
    // the connection is gone and any commit of \Seen flags has finished
    // (until then the session owns the mailbox and its lock).
    void start(std::function<void()> on_finished) override;
    // Server shutdown: "-ERR [SYS/TEMP] Server shutting down" and close;
    // nothing is deleted (no QUIT), \Seen marks are still saved.
    void shutdown() override;
    State state() const { return state_; }
    // The RFC 1939 §7 timestamp of the greeting; empty when APOP is off.
    const std::string& apop_timestamp() const { return timestamp_; }

private:
    using Handler = void (Session::*)(const Command&);
    struct CommandSpec {
        Keyword keyword;
        Handler handler;
        unsigned states;  // bit (1 << State) per state the command is allowed in
    };
    static const CommandSpec kCommands[];

    // A multi-line response written in bounded pieces as the client takes
    // them (RETR, TOP, LIST, UIDL): never a whole message or listing in memory.
    struct MultiLine {
        Keyword keyword = Keyword::unknown;
        size_t index = 0;  // RETR/TOP: the message; LIST/UIDL: the next one to list
        std::unique_ptr<store::MessageReader> reader;
        std::optional<Encoder> encoder;
    };

    // Input loop and replies (session.cpp).
    void on_readable();
    void process_input();
    void dispatch(std::string_view line);
    std::string state_error(Keyword keyword) const;
    void ok(std::string_view text);
    // Every -ERR for a bad command counts toward error_limit.
    void err(std::string_view text);
    // An -ERR that is not the client's fault (or that has its own limit).
    void err_uncounted(std::string_view text);
    void begin_wait();
    void end_wait();
    void restart_idle_timer();
    void on_idle_timeout();
    void on_drained();
    void on_closed(event::CloseReason reason);
    void close_session(std::string_view last_reply);
    void finish();
    void wipe_line();
    std::string client() const;  // "ip" for logs

    // AUTHORIZATION (session_auth.cpp).
    void cmd_capa(const Command& command);
    void cmd_user(const Command& command);
    void cmd_pass(const Command& command);
    void cmd_apop(const Command& command);
    void cmd_auth(const Command& command);
    void cmd_stls(const Command& command);
    void cmd_quit(const Command& command);
    bool plaintext_allowed() const;
    bool mechanism_allowed(std::string_view mechanism) const;
    std::vector<std::string> allowed_mechanisms() const;
    bool stls_offered() const;
    void tls_ready(bool ok);
    void sasl_response(std::string& line);
    void sasl_step(const sasl::Step& step);
    void cancel_sasl();
    void check_password(std::string user, std::string password, std::string method);
    void verified(const std::string& asked_user, const std::string& method, Result<auth_lookup::VerifyReply> reply);
    void login_failed(const std::string& user, const std::string& method, std::string_view why);
    void login_temporary_failure(const std::string& user, const std::string& method, std::string_view why);
    void user_found(const std::string& method, Result<std::optional<auth_lookup::UserInfo>> found);
    struct Opened;
    void mailbox_opened(const std::string& user, const std::string& method, Opened opened);

    // TRANSACTION and UPDATE (session_transaction.cpp).
    void cmd_noop(const Command& command);
    void cmd_stat(const Command& command);
    void cmd_list(const Command& command);
    void cmd_uidl(const Command& command);
    void cmd_retr(const Command& command);
    void cmd_top(const Command& command);
    void cmd_dele(const Command& command);
    void cmd_rset(const Command& command);
    void cmd_last(const Command& command);
    void cmd_quit_transaction(const Command& command);
    // 0-based index of a message number argument that names a message not
    // marked deleted; nullopt after answering "-ERR no such message".
    std::optional<size_t> message_argument(std::string_view argument);
    void send_message(size_t index, std::optional<uint64_t> body_lines);
    void pump();
    bool pump_listing(MultiLine& response);
    bool pump_message(MultiLine& response);
    void message_sent(MultiLine& response);
    void update_committed(Result<store::CommitReport> report);
    std::vector<size_t> seen_to_mark(bool honour_deletions) const;
    void save_seen_after_drop();

    SessionServices services_;
    std::shared_ptr<event::Connection> connection_;
    PortKind kind_;
    std::string client_address_;
    State state_ = State::authorization;
    bool waiting_ = false;  // a reply waits on authd, the worker pool or the output
    bool processing_ = false;  // process_input's loop is running
    std::function<void()> on_finished_;
    event::Timer idle_timer_;
    event::Timer delay_timer_;  // auth_failure_delay before a failure reply
    std::function<void()> delayed_;  // what delay_timer_ runs
    std::string line_;          // reused input line buffer
    std::string timestamp_;     // APOP (RFC 1939 §7), kept across STLS
    size_t errors_ = 0;
    size_t failures_ = 0;

    // AUTHORIZATION.
    std::string user_;  // from USER, until PASS
    std::string auth_method_;
    std::unique_ptr<sasl::ServerMechanism> mechanism_;

    // TRANSACTION.
    std::string auth_user_;  // canonical address
    std::shared_ptr<OpenMailbox> mailbox_;
    size_t count_ = 0;
    std::vector<bool> deleted_;
    std::vector<bool> accessed_;  // RETR/TOP in this session: \Seen at the end
    size_t deleted_count_ = 0;
    uint64_t kept_size_ = 0;  // octets of the messages not marked deleted
    size_t last_accessed_ = 0;  // RFC 1460 LAST
    size_t retrieved_ = 0;
    uint64_t retrieved_bytes_ = 0;
    std::unique_ptr<MultiLine> multiline_;
    bool commit_running_ = false;
    bool connection_gone_ = false;
    bool finished_ = false;
};

}  // namespace facteur::pop3d
