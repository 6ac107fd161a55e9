// One SMTP server session (RFC 5321 and its extensions) as an explicit state
// machine: the states, the table of commands with the states they are
// allowed in, and the input loop that keeps PIPELINING (RFC 2920) replies in
// order while a command waits for authd or for the queue file's fsync.
// Command handlers live in smtp_commands*.cpp.
#pragma once

#include <array>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/auth_lookup.hpp"
#include "libmail/event.hpp"
#include "libmail/session_server.hpp"
#include "libmail/queue.hpp"
#include "libmail/sasl.hpp"
#include "libmail/tls.hpp"
#include "smtpd/data_reader.hpp"
#include "smtpd/qmgr_wakeup.hpp"
#include "smtpd/settings.hpp"
#include "smtpd/smtp_command.hpp"
#include "smtpd/smtp_parameters.hpp"
#include "smtpd/smtp_reply.hpp"

namespace facteur::smtpd {

// What every session of a process shares; owned by the server and main.
struct SessionServices {
    const Settings& settings;
    event::Loop& loop;
    event::WorkerPool& pool;
    auth_lookup::Client& auth;
    QmgrWakeup& qmgr;
    const queue::Spool& spool;
    const tls::Context* tls;  // null: no TLS configured
};

class Session : public event::ServerSession, public std::enable_shared_from_this<Session> {
public:
    enum class State {
        fresh,    // greeting sent, no HELO/EHLO yet (also right after STARTTLS)
        greeted,  // HELO/EHLO done, no transaction
        mail,     // MAIL accepted, no recipient yet
        rcpt,     // at least one recipient accepted
        data,     // reading DATA lines
        bdat,     // a BDAT transaction is in progress (RFC 3030)
        sasl,     // an AUTH exchange waits for the client's response
        closing,  // the last reply is going out
    };

    Session(SessionServices services, std::shared_ptr<event::Connection> connection, PortKind kind);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Sends the 220 greeting and starts reading. `on_finished` runs once,
    // when the connection is gone.
    void start(std::function<void()> on_finished) override;
    // Server shutdown: "421 4.3.2" and close.
    void shutdown() override;
    State state() const { return state_; }

private:
    using Handler = void (Session::*)(const Command&);
    struct CommandSpec {
        Verb verb;
        Handler handler;
        unsigned states;  // bit (1 << State) per state the command is allowed in
    };
    static const CommandSpec kCommands[];
    static constexpr size_t kVerbCount = static_cast<size_t>(Verb::unknown) + 1;

    // Input loop (smtp_session.cpp).
    void on_readable();
    void process_input();
    bool read_command_line();
    bool read_data_lines();
    bool read_chunk();
    void dispatch(std::string_view line);
    std::string sequence_error(Verb verb) const;
    void begin_wait();
    void end_wait();
    void on_closed(event::CloseReason reason);
    void on_idle_timeout();
    void close_session(const Reply& last);
    std::string client() const;  // "unknown[ip]" for logs
    void wipe_line();

    // Replies. Every error counts toward error_limit.
    void send(const Reply& reply);
    void send(int code, std::string_view enhanced, std::string_view text) { send(Reply{code, std::string(enhanced), std::string(text)}); }
    void send_lines(int code, std::string_view enhanced, const std::vector<std::string>& lines);
    void note_reply(int code);

    // Session-level commands (smtp_commands.cpp).
    void cmd_helo(const Command& command);
    void cmd_ehlo(const Command& command);
    void cmd_rset(const Command& command);
    void cmd_noop(const Command& command);
    void cmd_quit(const Command& command);
    void cmd_help(const Command& command);
    void cmd_vrfy(const Command& command);
    void cmd_expn(const Command& command);
    void cmd_not_implemented(const Command& command);
    bool auth_offered() const;

    // ETRN (smtp_commands_etrn.cpp).
    void cmd_etrn(const Command& command);
    bool etrn_offered() const;

    // Envelope (smtp_commands_mail.cpp).
    void cmd_mail(const Command& command);
    void cmd_rcpt(const Command& command);
    void recipient_resolved(const address::Path& path, const RcptOptions& options, bool may_relay,
                            Result<auth_lookup::Resolution> resolution);
    void reject_recipient(const Reply& reply, std::string_view recipient);
    bool may_relay() const;
    void reset_transaction();

    // Message data (smtp_commands_data.cpp).
    void cmd_data(const Command& command);
    void cmd_bdat(const Command& command);
    bool begin_message();
    void store(std::string_view bytes);
    void flush_header_buffer(const BodyScanner& scanner);
    void chunk_complete();
    void end_of_message(BodyError error, const BodyScanner& scanner, bool close_after);
    void queue_message();
    void message_committed(const std::string& queue_id, uint64_t size, Status status);

    // STARTTLS and AUTH (smtp_commands_auth.cpp).
    void cmd_starttls(const Command& command);
    void cmd_auth(const Command& command);
    void sasl_response(std::string& line);
    void sasl_step(const sasl::Step& step);
    void sasl_verify();
    void tls_ready(bool ok);

    SessionServices services_;
    std::shared_ptr<event::Connection> connection_;
    PortKind kind_;
    std::string client_address_;
    State state_ = State::fresh;
    bool waiting_ = false;  // a reply is pending on authd or the worker pool
    std::function<void()> on_finished_;
    event::Timer idle_timer_;
    std::string line_;  // reused input line buffer

    // Session.
    std::string helo_;
    bool extended_ = false;  // EHLO (not HELO) was used
    std::string auth_user_;
    std::string auth_method_;
    std::unique_ptr<sasl::ServerMechanism> mechanism_;
    size_t errors_ = 0;
    struct Count {
        size_t ok = 0, total = 0;
    };
    std::array<Count, kVerbCount> counts_{};
    Verb current_verb_ = Verb::unknown;
    bool current_counted_ = false;

    // Transaction.
    std::string sender_;  // empty = null reverse-path
    MailOptions mail_options_;
    std::vector<queue::Recipient> recipients_;
    std::optional<queue::Writer> writer_;
    std::optional<DataReader> data_reader_;
    std::optional<BodyScanner> chunk_scanner_;
    std::string header_buffer_;  // submission: header held until we know if Message-ID/Date are missing
    bool header_buffering_ = false;
    bool store_failed_ = false;
    std::time_t message_time_ = 0;

    // BDAT chunk being read.
    bool chunk_reading_ = false;
    uint64_t chunk_remaining_ = 0;
    uint64_t chunk_size_ = 0;
    bool chunk_last_ = false;
    std::optional<Reply> chunk_refusal_;  // set: the chunk is read and thrown away, then this is sent
};

}  // namespace facteur::smtpd
