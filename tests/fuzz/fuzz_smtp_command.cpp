// libFuzzer target for smtpd's untrusted-input parsers: the SMTP command
// line, BDAT/AUTH arguments, MAIL/RCPT parameters and the DATA/BDAT body
// scanner, with invariants checked on what they return.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtpd/data_reader.hpp"
#include "smtpd/smtp_command.hpp"
#include "smtpd/smtp_parameters.hpp"
#include "smtpd/smtp_reply.hpp"

using namespace facteur;
using namespace facteur::smtpd;

namespace {

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    Command command = parse_command(input);
    // The parser only points into its input, and names an error when it fails.
    if (!inside(command.name, input) || !inside(command.argument, input)) std::abort();
    if (command.error != CommandError::none && command.error_text.empty()) std::abort();
    if (command.error == CommandError::none) {
        for (char c : command.argument) {
            auto byte = static_cast<unsigned char>(c);
            if ((byte < 0x20 && c != '\t') || byte == 0x7f) std::abort();
        }
        if (command.verb == Verb::bdat) (void)parse_bdat_argument(command.argument);
        if (command.verb == Verb::auth) {
            auto auth = parse_auth_argument(command.argument);
            if (auth && auth->mechanism.empty()) std::abort();
        }
        if (command.verb == Verb::mail || command.verb == Verb::rcpt) {
            if (auto split = split_mail_argument(command.argument)) {
                if (!inside(split->path, input) || !inside(split->parameters, input)) std::abort();
                if (split->path.size() < 2 || split->path.front() != '<' || split->path.back() != '>') std::abort();
            }
            address::PathOptions options;
            options.allow_null = command.verb == Verb::mail;
            options.allow_postmaster = command.verb == Verb::rcpt;
            auto parsed = address::parse_mail_argument(command.argument, options);
            if (parsed) {
                MailOptions mail;
                RcptOptions rcpt;
                auto refused = parse_mail_parameters(parsed->second, 1 << 20, mail);
                if (!refused && mail.declared_size > (1 << 20)) std::abort();
                refused = parse_rcpt_parameters(parsed->second, rcpt);
                if (!refused && (rcpt.notify & queue::notify_never) && rcpt.notify != queue::notify_never) std::abort();
            }
        }
    }
    (void)decode_xtext(input);

    // The same bytes as a DATA body, line by line: the stored content is
    // never larger than the input, and nothing follows a bare line ending.
    DataReader reader(BodyLimits{1 << 16, 1000, 5, true});
    size_t start = 0, stored = 0;
    while (start < input.size()) {
        size_t newline = input.find('\n', start);
        if (newline == std::string_view::npos) break;
        std::string_view line = input.substr(start, newline - start + 1);
        start = newline + 1;
        std::string_view content;
        if (reader.feed_line(line, content) == DataReader::Step::end) break;
        if (!inside(content, line)) std::abort();
        stored += content.size();
    }
    if (stored > input.size() || reader.size() != stored) std::abort();
    return 0;
}
