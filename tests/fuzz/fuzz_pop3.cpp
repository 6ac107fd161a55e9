// libFuzzer target for pop3d's untrusted-input parsers and its message
// encoder: the command line, message numbers, and the RETR/TOP wire form,
// with invariants checked on what they return.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libmail/mailbox.hpp"
#include "pop3d/encoder.hpp"
#include "pop3d/pop3_command.hpp"

using namespace facteur;
using namespace facteur::pop3d;

namespace {

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

// The response body between the "+OK" line and the final ".\r\n", unstuffed.
// Every line of the wire form ends in CRLF, and no line is a lone ".".
std::string check_wire_form(const std::string& wire) {
    if (wire.size() < 3 || wire.compare(wire.size() - 3, 3, ".\r\n") != 0) std::abort();
    std::string body;
    size_t start = 0;
    const size_t end = wire.size() - 3;
    while (start < end) {
        size_t lf = wire.find('\n', start);
        if (lf == std::string::npos || lf >= end || lf == start || wire[lf - 1] != '\r') std::abort();
        std::string_view line(wire.data() + start, lf + 1 - start);
        if (line == ".\r\n") std::abort();
        if (line.front() == '.') line.remove_prefix(1);  // RFC 1939 §3 byte-stuffing
        body.append(line);
        start = lf + 1;
    }
    return body;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    // The connection hands the parser one line at a time, up to its LF.
    const std::string_view line = input.substr(0, input.find('\n') == std::string_view::npos ? input.size()
                                                                                            : input.find('\n') + 1);
    Command command = parse_command(line);
    if (!inside(command.name, line) || !inside(command.rest, line)) std::abort();
    for (std::string_view argument : command.arguments) {
        if (!inside(argument, line)) std::abort();
        if (argument.find(' ') != std::string_view::npos) std::abort();
    }
    if (command.error == CommandError::none && command.keyword == Keyword::unknown) std::abort();
    if (command.rest.find('\n') != std::string_view::npos) std::abort();
    for (std::string_view argument : command.arguments) {
        if (auto number = parse_message_number(argument, 1000); number && (*number < 1 || *number > 1000)) std::abort();
    }
    (void)strip_line_ending(line);

    // The same bytes as a stored message, fed in two pieces split at a
    // point the input chooses: RETR's wire form unstuffs to exactly
    // served_size bytes, and TOP's is never longer than RETR's.
    size_t split = size == 0 ? 0 : data[0] % (size + 1);
    Encoder retr;
    std::string wire;
    retr.feed(input.substr(0, split), wire);
    retr.feed(input.substr(split), wire);
    retr.finish(wire);
    std::string body = check_wire_form(wire);
    const uint64_t served = store::served_size(input);
    if (retr.content_bytes() != served) std::abort();
    bool ends_with_newline = !input.empty() && input.back() == '\n';
    if (body.size() != served + (input.empty() || ends_with_newline ? 0 : 2)) std::abort();

    Encoder top(size == 0 ? 0 : data[size - 1] % 4);
    std::string top_wire;
    top.feed(input, top_wire);
    top.finish(top_wire);
    if (check_wire_form(top_wire).size() > body.size()) std::abort();
    return 0;
}
