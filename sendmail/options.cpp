// sendmail(1) option parsing (sendmail/options.hpp).
#include "sendmail/options.hpp"

#include <fmt/format.h>

#include "libmail/address.hpp"
#include "libmail/ascii.hpp"
#include "libmail/log.hpp"

namespace facteur::sendmail {
namespace {

// RFC 3461 §4.4: an ENVID is at most 100 characters.
constexpr size_t kMaxEnvid = 100;
constexpr size_t kMaxFullName = 256;

std::string_view basename(std::string_view path) {
    size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Values that end up in a header or the envelope: no line breaks or NULs,
// which could forge another field.
bool has_line_break(std::string_view text) { return text.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos; }

// Flags Postfix's sendmail accepts and ignores (-c, -e, -m, -n, -G, -U, -x)
// or handles (-t, -i, -v, -I).
bool is_flag(char c) { return std::string_view("tivIcmnGUx").find(c) != std::string_view::npos; }
// Options that take a value, attached ("-fme") or as the next argument.
bool takes_value(char c) { return std::string_view("frFoOCbBNRVhLXpe").find(c) != std::string_view::npos; }

Status apply_mode(Options& options, std::string_view value) {
    if (value == "m") options.mode = Mode::deliver;
    else if (value == "p") options.mode = Mode::print_queue;
    else if (value == "i") options.mode = Mode::new_aliases;
    else if (value == "s" || value == "d" || value == "D" || value == "v" || value == "h" || value == "H" ||
             value == "t" || value == "P")
        return make_error(fmt::format("-b{} is not supported (facteur's smtpd and qmgr do this job)", value));
    else return make_error(fmt::format("-b{}: unknown mode", log::printable(value, 32)));
    return {};
}

Status apply_queue_option(Options& options, std::string_view value) {
    // "-q" flushes the queue; "-q30m" comes from sendmail -bd -q30m start
    // scripts: qmgr runs the queue on its own timer, so the interval is
    // ignored and the queue flushed once.
    if (value.empty() || (value[0] >= '0' && value[0] <= '9')) {
        options.mode = Mode::flush_queue;
        return {};
    }
    return make_error(fmt::format("-q{} is not supported: facteur flushes the whole queue only (use sendmail -q)",
                                  log::printable(value.substr(0, 1), 4)));
}

Status apply_value(Options& options, char option, std::string_view value) {
    switch (option) {
    case 'f':
    case 'r':
        if (has_line_break(value)) return make_error(fmt::format("-{}: the sender contains a line break", option));
        if (value.size() > address::max_path_length)
            return make_error(fmt::format("-{}: the sender is longer than {} bytes", option, address::max_path_length));
        options.sender = std::string(value);
        return {};
    case 'F':
        if (has_line_break(value)) return make_error("-F: the full name contains a line break");
        if (value.size() > kMaxFullName)
            return make_error(fmt::format("-F: the full name is longer than {} bytes", kMaxFullName));
        options.full_name = std::string(value);
        return {};
    case 'o':
        // -oi is -i; every other -o option (-om, -oem, -oA...) is a sendmail
        // configuration knob without meaning here.
        if (value == "i") options.ignore_dots = true;
        return {};
    case 'C':
        if (value.empty()) return make_error("-C: empty configuration file name");
        options.config_file = std::string(value);
        return {};
    case 'b':
        return apply_mode(options, value);
    case 'B':
        if (ascii::iequals(value, "7BIT")) options.body = queue::BodyType::seven_bit;
        else if (ascii::iequals(value, "8BITMIME")) options.body = queue::BodyType::eight_bit_mime;
        else return make_error(fmt::format("-B {}: the body type is 7BIT or 8BITMIME", log::printable(value, 32)));
        return {};
    case 'N': {
        auto notify = parse_notify(value);
        if (!notify) return make_error(notify.error());
        options.notify = *notify;
        return {};
    }
    case 'R':
        if (ascii::iequals(value, "hdrs")) options.ret = queue::Ret::headers;
        else if (ascii::iequals(value, "full")) options.ret = queue::Ret::full;
        else return make_error(fmt::format("-R {}: RET is hdrs or full (RFC 3461 §4.3)", log::printable(value, 32)));
        return {};
    case 'V':
        if (value.empty() || value.size() > kMaxEnvid)
            return make_error(fmt::format("-V: the envelope id must be 1 to {} characters (RFC 3461 §4.4)", kMaxEnvid));
        for (char c : value)
            if (c < 0x20 || c > 0x7e) return make_error("-V: the envelope id must be printable ASCII (RFC 3461 §4.4)");
        options.envid = std::string(value);
        return {};
    default:
        // -O option=value, -h hops, -L label, -X log file, -p protocol, -e
        // mode: accepted for compatibility and ignored, like Postfix.
        return {};
    }
}

}  // namespace

Result<unsigned> parse_notify(std::string_view text) {
    if (ascii::iequals(text, "never")) return unsigned{queue::notify_never};
    unsigned notify = 0;
    while (!text.empty()) {
        size_t comma = text.find(',');
        std::string_view word = text.substr(0, comma);
        text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
        if (ascii::iequals(word, "success")) notify |= queue::notify_success;
        else if (ascii::iequals(word, "failure")) notify |= queue::notify_failure;
        else if (ascii::iequals(word, "delay")) notify |= queue::notify_delay;
        else
            return make_error(fmt::format("-N: '{}' is not never, success, failure or delay (RFC 3461 §4.1)",
                                          log::printable(word, 32)));
    }
    if (notify == 0) return make_error("-N: empty NOTIFY list (RFC 3461 §4.1)");
    return notify;
}

std::string usage(std::string_view program) {
    if (program == "mailq") return "usage: mailq [-v] [-C config]";
    if (program == "newaliases") return "usage: newaliases [-v] [-C config]";
    return fmt::format(
        "usage: {} [-t] [-i|-oi] [-f sender] [-F full name] [-C config] [-N notify] [-R ret] [-V envid] "
        "[-B type] [-v] [--] [recipient ...] | -bp | -q | -bi",
        program);
}

Result<Options> parse_options(const std::vector<std::string>& argv) {
    Options options;
    if (!argv.empty()) {
        std::string_view name = basename(argv[0]);
        if (name == "mailq") options.mode = Mode::print_queue;
        else if (name == "newaliases") options.mode = Mode::new_aliases;
        if (!name.empty()) options.program = std::string(name);
    }
    size_t index = 1;
    while (index < argv.size()) {
        std::string_view argument = argv[index];
        if (argument == "--") {
            ++index;
            break;
        }
        // Options end at the first operand (POSIX getopt, as Postfix does).
        if (argument.size() < 2 || argument[0] != '-') break;
        ++index;
        for (size_t position = 1; position < argument.size(); ++position) {
            char option = argument[position];
            if (is_flag(option)) {
                if (option == 't') options.extract_recipients = true;
                else if (option == 'i') options.ignore_dots = true;
                else if (option == 'v') ++options.verbose;
                else if (option == 'I') options.mode = Mode::new_aliases;
                continue;
            }
            if (option == 'q') {
                if (Status s = apply_queue_option(options, argument.substr(position + 1)); !s) return make_error(s.error());
                break;
            }
            if (!takes_value(option))
                return make_error(fmt::format("unknown option -{}", log::printable(std::string_view(&option, 1), 8)));
            std::string_view value = argument.substr(position + 1);
            if (value.empty()) {
                if (index >= argv.size()) return make_error(fmt::format("option -{} needs a value", option));
                value = argv[index++];
            }
            if (Status s = apply_value(options, option, value); !s) return make_error(s.error());
            break;  // the value used the rest of this argument
        }
    }
    for (; index < argv.size(); ++index) options.recipients.push_back(argv[index]);
    return options;
}

}  // namespace facteur::sendmail
