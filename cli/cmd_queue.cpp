// `facteur queue list|show|flush [DOMAIN]|hold|release|delete|requeue`: look at and
// steer the mail queue through qmgr's socket (libmail/queue_control.hpp);
// only qmgr moves queue files, so the CLI never touches the spool itself.
#include <memory>
#include <string>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "libmail/log.hpp"
#include "libmail/queue.hpp"
#include "libmail/queue_control.hpp"
#include "libmail/queue_listing.hpp"

namespace facteur::cli {
namespace {

struct QueueArguments {
    std::string id;
    std::string domain;
    bool json = false;
};

// Sends one request to qmgr; the error already says "qmgr is not running"
// when that is the reason.
Result<ipc::Frame> ask_qmgr(const Context& context, queue_control::Op op, std::string_view id = {}) {
    auto config = context.load_config();
    if (!config) return make_error(config.error());
    return queue_control::call(config->path("qmgr_socket"), queue_control::request(op, id));
}

int list(const Context& context, bool json) {
    auto reply = ask_qmgr(context, queue_control::Op::list);
    if (!reply) return fail(reply.error());
    auto listing = queue_control::decode_list_reply(*reply);
    if (!listing) return fail(fmt::format("list: {}", listing.error()));
    fmt::print("{}", json ? queue_listing::format_json(*listing) : queue_listing::format_text(*listing));
    return kExitOk;
}

// Header text from the message itself: one output line per input line,
// indented, with control characters other than TAB made visible.
std::string printable_header(std::string_view headers) {
    std::string out;
    while (!headers.empty()) {
        size_t end = headers.find('\n');
        std::string_view line = headers.substr(0, end);
        headers = end == std::string_view::npos ? std::string_view() : headers.substr(end + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) continue;  // the blank line that ends the header
        out += "  ";
        size_t start = 0;
        for (size_t i = 0; i <= line.size(); ++i) {
            if (i < line.size() && line[i] != '\t') continue;
            out += log::printable(line.substr(start, i - start), 4096);
            if (i < line.size()) out += '\t';
            start = i + 1;
        }
        out += '\n';
    }
    return out;
}

int show(const Context& context, const std::string& id) {
    auto reply = ask_qmgr(context, queue_control::Op::show, id);
    if (!reply) return fail(reply.error());
    auto decoded = queue_control::decode_show_reply(*reply);
    if (!decoded) return fail(fmt::format("show: {}", decoded.error()));
    const auto& [message, headers] = *decoded;
    std::string out;
    out += fmt::format("Queue ID:      {}\n", message.id);
    out += fmt::format("Folder:        {}\n", message.folder);
    out += fmt::format("Size:          {} bytes\n", message.size);
    out += fmt::format("Arrival:       {}\n", queue_listing::format_arrival(message.arrival));
    out += fmt::format("Sender:        <{}>\n", log::printable(message.sender, 1024));
    out += fmt::format("Next attempt:  {}\n",
                       message.next_attempt == 0 ? "now" : queue_listing::format_arrival(message.next_attempt));
    out += fmt::format("Recipients:    {}\n", message.recipients.size());
    for (const auto& recipient : message.recipients) {
        out += fmt::format("  {:<9} <{}>", recipient.state, log::printable(recipient.address, 1024));
        if (!recipient.dsn.empty()) out += " " + log::printable(recipient.dsn, 16);
        if (!recipient.reason.empty()) out += " (" + log::printable(recipient.reason, 1024) + ")";
        out += '\n';
    }
    out += "Headers:\n";
    out += printable_header(headers);
    fmt::print("{}", out);
    return kExitOk;
}

// flush [DOMAIN]: DOMAIN alone is that domain, "@DOMAIN" also its
// subdomains (like ETRN, RFC 1985 §5.3).
int flush(const Context& context, std::string domain) {
    bool subdomains = !domain.empty() && domain.front() == '@';
    if (subdomains) domain.erase(0, 1);
    Result<ipc::Frame> reply = make_error("");
    if (domain.empty()) {
        reply = ask_qmgr(context, queue_control::Op::flush);
    } else {
        auto config = context.load_config();
        if (!config) return fail(config.error());
        reply = queue_control::call(config->path("qmgr_socket"), queue_control::flush_request(domain, subdomains));
    }
    if (!reply) return fail(reply.error());
    auto count = queue_control::decode_count_reply(*reply);
    if (!count) return fail(fmt::format("flush: {}", count.error()));
    std::string scope = domain.empty() ? "" : fmt::format(" for {}{}", subdomains ? "@" : "", domain);
    report(fmt::format("{} deferred message{}{} flushed (retried now)", *count, *count == 1 ? "" : "s", scope));
    return kExitOk;
}

// hold, release, delete, requeue: "3 messages held".
int change(const Context& context, queue_control::Op op, const std::string& id, std::string_view done) {
    auto reply = ask_qmgr(context, op, id);
    if (!reply) return fail(reply.error());
    auto count = queue_control::decode_count_reply(*reply);
    if (!count) return fail(fmt::format("{}: {}", queue_control::op_name(op), count.error()));
    // Naming one message that is not in the queue is a failure, like Postfix's
    // postsuper; "all" on an empty queue is not.
    if (*count == 0 && id != "all") return fail(fmt::format("{}: no such message in the queue", id));
    report(fmt::format("{} message{} {}", *count, *count == 1 ? "" : "s", done));
    return kExitOk;
}

// Checked before anything is sent, so a typo is a usage error (exit 2).
CLI::Validator queue_id_validator(bool allow_all) {
    return CLI::Validator(
        [allow_all](std::string& value) -> std::string {
            if (allow_all && value == "all") return {};
            if (queue::valid_queue_id(value)) return {};
            return fmt::format("'{}' is not a queue id ({} characters of 0-9 and A-V{})", log::printable(value, 64),
                               queue::kQueueIdLength, allow_all ? ", or \"all\"" : "");
        },
        allow_all ? "ID|all" : "ID");
}

}  // namespace

void register_queue_commands(CLI::App& app, Context& context) {
    auto arguments = std::make_shared<QueueArguments>();
    CLI::App* queue = app.add_subcommand("queue", "Look at and manage the mail queue (through qmgr)");
    queue->require_subcommand(1);

    CLI::App* list_command = queue->add_subcommand("list", "List queued messages, like mailq");
    list_command->add_flag("--json", arguments->json, "One JSON object per message and line, like postqueue -j");
    list_command->callback([&context, arguments] { context.exit_code = list(context, arguments->json); });

    CLI::App* show_command = queue->add_subcommand("show", "Show a message's envelope, recipients and headers");
    show_command->add_option("ID", arguments->id, "Queue id")->required()->check(queue_id_validator(false));
    show_command->callback([&context, arguments] { context.exit_code = show(context, arguments->id); });

    CLI::App* flush_command =
        queue->add_subcommand("flush", "Retry deferred messages now: all, or those with recipients in DOMAIN");
    flush_command
        ->add_option("DOMAIN", arguments->domain, "Only mail for this domain; @DOMAIN also for its subdomains")
        ->check(CLI::Validator(
            [](std::string& value) -> std::string {
                std::string_view domain = value;
                if (!domain.empty() && domain.front() == '@') domain.remove_prefix(1);
                if (queue_control::valid_flush_domain(domain)) return {};
                return fmt::format("'{}' is not a domain name", log::printable(value, 64));
            },
            "DOMAIN"));
    flush_command->callback([&context, arguments] { context.exit_code = flush(context, arguments->domain); });

    struct Change {
        const char* name;
        queue_control::Op op;
        const char* help;
        const char* done;
    };
    static constexpr Change kChanges[] = {
        {"hold", queue_control::Op::hold, "Put messages on hold: no delivery until released", "held"},
        {"release", queue_control::Op::release, "Release held messages for delivery", "released"},
        {"delete", queue_control::Op::remove, "Delete messages from the queue, without a bounce", "deleted"},
        {"requeue", queue_control::Op::requeue, "Queue messages again, as new (routing redone, retry now)",
         "requeued"},
    };
    for (const Change& change_command : kChanges) {
        CLI::App* command = queue->add_subcommand(change_command.name, change_command.help);
        if (change_command.op == queue_control::Op::remove) command->alias("del");
        command->add_option("ID", arguments->id, "Queue id, or \"all\"")->required()->check(queue_id_validator(true));
        command->callback([&context, arguments, change_command] {
            context.exit_code = change(context, change_command.op, arguments->id, change_command.done);
        });
    }
}

}  // namespace facteur::cli
