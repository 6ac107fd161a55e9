// libFuzzer target for relayd's DATA transparency (RFC 5321 §4.5.2) over a
// stream cut into arbitrary pieces, and for xtext (RFC 3461 §4): both must
// be exactly reversible, and no body line may end the DATA early.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "relayd/smtp_command.hpp"
#include "smtpd/smtp_parameters.hpp"

using namespace facteur;

namespace {

// The receiver's side of RFC 5321 §4.5.2: a line starting with "." loses
// that dot. Every such line in relayd's output must start with "..": a lone
// leading dot would be taken as (or smuggled in as) the end of the data.
std::string unstuff(std::string_view stuffed) {
    std::string out;
    out.reserve(stuffed.size());
    bool line_start = true;
    for (size_t i = 0; i < stuffed.size(); ++i) {
        char c = stuffed[i];
        if (line_start && c == '.') {
            if (i + 1 >= stuffed.size() || stuffed[i + 1] != '.') std::abort();
            ++i;
        }
        out += stuffed[i];
        line_start = stuffed[i] == '\n';
    }
    return out;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void check_xtext(std::string_view input) {
    std::string encoded = relayd::xtext_encode(input);
    std::string decoded;
    for (size_t i = 0; i < encoded.size(); ++i) {
        auto byte = static_cast<unsigned char>(encoded[i]);
        if (byte < 33 || byte > 126 || encoded[i] == '=') std::abort();
        if (encoded[i] != '+') {
            decoded += encoded[i];
            continue;
        }
        // "+XX", upper-case hex, and only for a byte that needs it.
        if (i + 2 >= encoded.size()) std::abort();
        int high = hex_value(encoded[i + 1]), low = hex_value(encoded[i + 2]);
        if (high < 0 || low < 0) std::abort();
        auto value = static_cast<unsigned char>(high * 16 + low);
        if (value >= 33 && value <= 126 && value != '+' && value != '=') std::abort();
        decoded += static_cast<char>(value);
        i += 2;
    }
    if (decoded != input) std::abort();
    // smtpd's decoder, the other end of the wire, agrees.
    auto theirs = smtpd::decode_xtext(encoded);
    if (theirs && *theirs != input) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view whole(reinterpret_cast<const char*>(data), size);
    // The first bytes choose the piece sizes (0 to 63, cycling); the rest is the body.
    const size_t header = size < 4 ? size : 4;
    const std::string_view sizes = whole.substr(0, header);
    const std::string_view input = whole.substr(header);

    relayd::DotStuffer stuffer;
    std::string out;
    size_t at = 0, turn = 0, empty_in_a_row = 0;
    while (at < input.size()) {
        size_t piece = sizes.empty() ? input.size() : static_cast<unsigned char>(sizes[turn++ % sizes.size()]) % 64;
        // A header of zeros would never progress: take one byte then.
        if (piece == 0 && ++empty_in_a_row > sizes.size()) piece = 1;
        if (piece != 0) empty_in_a_row = 0;
        piece = std::min(piece, input.size() - at);
        size_t before = out.size();
        stuffer.add(input.substr(at, piece), out);
        // Each piece grows the output by itself plus the added dots only.
        if (out.size() < before + piece || out.size() > before + 2 * piece) std::abort();
        at += piece;
    }
    if (unstuff(out) != input) std::abort();

    const std::string terminator = stuffer.finish();
    const std::string stream = out + terminator;
    if (input.empty()) {
        if (stream != ".\r\n") std::abort();
    } else {
        // The DATA ends at the first line that is a lone "."; it must be the
        // one finish() wrote, right after a line ending added when missing.
        if (stream.size() < 4 || stream.compare(stream.size() - 3, 3, ".\r\n") != 0) std::abort();
        const size_t dot = stream.size() - 3;
        if (stream[dot - 1] != '\n') std::abort();
        const bool bare_lf_end = input.back() == '\n' && (input.size() < 2 || input[input.size() - 2] != '\r');
        // A body ending in a bare LF (never in the queue: smtpd refuses bare
        // line endings) is the only way the terminator lacks its CR.
        if (!bare_lf_end && stream[dot - 2] != '\r') std::abort();
        // Unstuffed, the stream before the dot is the body plus at most the
        // missing line ending.
        std::string body = unstuff(std::string_view(stream).substr(0, dot));
        std::string expected(input);
        if (input.back() == '\r')
            expected += '\n';
        else if (input.back() != '\n')
            expected += "\r\n";
        if (body != expected) std::abort();
        // And no earlier "\r\n.\r\n" (end of data, RFC 5321 §4.1.1.4).
        size_t first_end = stream.find("\r\n.\r\n");
        if (first_end != std::string::npos && first_end + 5 != stream.size()) std::abort();
    }
    if (relayd::DotStuffer().finish() != ".\r\n") std::abort();

    check_xtext(input.substr(0, 512));
    return 0;
}
