// 8BITMIME -> 7bit: walks the MIME tree of a queued message and re-encodes
// every 8-bit leaf part as quoted-printable (RFC 6152 §3, RFC 2045 §6.7).
#include "libmail/mime_downgrade.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "libmail/ascii.hpp"

namespace facteur::mime {

namespace {

// RFC 2046 §5.1.1 gives no limit on nesting; ours keeps the recursion (and
// the repeated scans of nested parts) bounded.
constexpr size_t max_depth = 50;
// RFC 5321 §4.5.3.1.6 / RFC 5322 §2.1.1: 998 octets plus CRLF.
constexpr size_t max_line_length = 998;
// RFC 2045 §6.7 rule 5: encoded lines are at most 76 characters.
constexpr size_t qp_line_length = 76;

bool is_8bit_byte(unsigned char c) { return c >= 0x80 || c == 0; }

// What keeps a region from being sent as-is to a 7-bit server; empty when
// nothing does: 8-bit bytes or NUL (RFC 6152 §2), bare CR or LF (RFC 5321
// §2.3.8), lines longer than 998 octets.
std::string_view problem(std::string_view text) {
    size_t line_length = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        auto c = static_cast<unsigned char>(text[i]);
        if (is_8bit_byte(c)) return "8-bit data";
        if (c == '\r') {
            if (i + 1 >= text.size() || text[i + 1] != '\n') return "a bare CR";
            ++i;
            line_length = 0;
            continue;
        }
        if (c == '\n') return "a bare LF";
        if (++line_length > max_line_length) return "a line longer than 998 octets";
    }
    return {};
}

bool is_clean(std::string_view text) { return problem(text).empty(); }

struct Field {
    std::string_view raw;  // every line of the field, CRLFs included (the last may lack one at end of input)
    std::string name;      // lowercase
    std::string value;     // unfolded (RFC 5322 §2.2.3)
};

struct Header {
    std::vector<Field> fields;
    std::string_view raw;    // all field lines
    size_t body_offset = 0;  // where the body starts in the entity
    bool blank_line = false; // a blank line separated header and body
};

// RFC 5322 §3.6.8: field-name is printable US-ASCII except ':'.
std::optional<size_t> field_name_length(std::string_view line) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    for (size_t i = 0; i < colon; ++i) {
        auto c = static_cast<unsigned char>(line[i]);
        if (c < 33 || c > 126) return std::nullopt;
    }
    return colon;
}

// The header ends at the first blank line, or (a malformed entity) at the
// first line that is neither a field nor a continuation: that line is body.
Header split_header(std::string_view entity) {
    Header header;
    size_t pos = 0;
    while (pos < entity.size()) {
        if (entity.substr(pos, 2) == "\r\n") {
            header.blank_line = true;
            header.raw = entity.substr(0, pos);
            header.body_offset = pos + 2;
            return header;
        }
        size_t end = entity.find("\r\n", pos);
        size_t next = end == std::string_view::npos ? entity.size() : end + 2;
        std::string_view line = entity.substr(pos, (end == std::string_view::npos ? entity.size() : end) - pos);
        if ((line.front() == ' ' || line.front() == '\t') && !header.fields.empty()) {
            Field& field = header.fields.back();
            field.raw = std::string_view(field.raw.data(), next - static_cast<size_t>(field.raw.data() - entity.data()));
            field.value += line;
        } else if (auto name_length = field_name_length(line)) {
            Field field;
            field.raw = entity.substr(pos, next - pos);
            field.name = ascii::lowercase(line.substr(0, *name_length));
            field.value = std::string(line.substr(*name_length + 1));
            header.fields.push_back(std::move(field));
        } else {
            break;
        }
        pos = next;
    }
    header.raw = entity.substr(0, pos);
    header.body_offset = pos;
    return header;
}

const Field* find_field(const Header& header, std::string_view name) {
    for (const Field& field : header.fields) {
        if (field.name == name) return &field;
    }
    return nullptr;
}

// RFC 5322 §3.2.2 comments, which RFC 2045 allows around Content-Type and
// Content-Transfer-Encoding values, removed outside quoted strings.
std::string strip_comments(std::string_view value) {
    std::string out;
    int depth = 0;
    bool quoted = false;
    for (size_t i = 0; i < value.size(); ++i) {
        char c = value[i];
        if (c == '\\' && i + 1 < value.size() && (quoted || depth > 0)) {
            if (quoted) {
                out += c;
                out += value[i + 1];
            }
            ++i;
            continue;
        }
        if (depth > 0) {
            if (c == '(') ++depth;
            if (c == ')') --depth;
            continue;
        }
        if (c == '"') quoted = !quoted;
        if (c == '(' && !quoted) {
            depth = 1;
            out += ' ';
            continue;
        }
        out += c;
    }
    return out;
}

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view text) {
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
    return text;
}

struct ContentType {
    std::string type;     // "text", lowercase
    std::string subtype;  // "plain", lowercase
    std::optional<std::string> boundary;
};

// RFC 2045 §5.1: type "/" subtype *(";" parameter); parameter values are
// tokens or quoted strings; names are case-insensitive. Unquoted values are
// taken up to ';' or white space, as real mailers write boundaries with
// characters RFC 2045 would want quoted.
std::optional<ContentType> parse_content_type(std::string_view raw_value) {
    std::string value = strip_comments(raw_value);
    std::string_view rest = value;
    size_t semicolon = rest.find(';');
    std::string_view media = trim(rest.substr(0, semicolon));
    size_t slash = media.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    ContentType result;
    result.type = ascii::lowercase(trim(media.substr(0, slash)));
    result.subtype = ascii::lowercase(trim(media.substr(slash + 1)));
    if (result.type.empty() || result.subtype.empty()) return std::nullopt;
    rest = semicolon == std::string_view::npos ? std::string_view() : rest.substr(semicolon + 1);
    while (!rest.empty()) {
        rest = trim(rest);
        size_t equals = rest.find('=');
        size_t stop = rest.find(';');
        if (equals == std::string_view::npos || (stop != std::string_view::npos && stop < equals)) {
            // A parameter without '=': skip it.
            if (stop == std::string_view::npos) break;
            rest.remove_prefix(stop + 1);
            continue;
        }
        std::string name = ascii::lowercase(trim(rest.substr(0, equals)));
        rest.remove_prefix(equals + 1);
        while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
        std::string parameter;
        if (!rest.empty() && rest.front() == '"') {
            size_t i = 1;
            for (; i < rest.size() && rest[i] != '"'; ++i) {
                if (rest[i] == '\\' && i + 1 < rest.size()) ++i;
                parameter += rest[i];
            }
            rest.remove_prefix(std::min(rest.size(), i + 1));
            size_t next = rest.find(';');
            rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 1);
        } else {
            size_t end = 0;
            while (end < rest.size() && rest[end] != ';' && !is_space(rest[end])) ++end;
            parameter = std::string(rest.substr(0, end));
            size_t next = rest.find(';', end);
            rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 1);
        }
        if (name == "boundary" && !result.boundary) result.boundary = std::move(parameter);
    }
    return result;
}

// RFC 2045 §6.1: the mechanism is a case-insensitive token; absent means 7bit.
std::string parse_encoding(const Header& header) {
    const Field* field = find_field(header, "content-transfer-encoding");
    if (field == nullptr) return "7bit";
    return ascii::lowercase(trim(strip_comments(field->value)));
}

// RFC 2045 §6.7. CRLF pairs are line breaks of the text and stay hard line
// breaks; every other control byte (bare CR and LF included), '=', 8-bit
// bytes, and white space ending a line are =XX; soft line breaks keep each
// encoded line within 76 characters.
void encode_quoted_printable(std::string_view body, std::string& out) {
    size_t line_start = 0;
    while (line_start <= body.size()) {
        size_t end = body.find("\r\n", line_start);
        bool last = end == std::string_view::npos;
        std::string_view line = body.substr(line_start, (last ? body.size() : end) - line_start);
        size_t column = 0;
        for (size_t i = 0; i < line.size(); ++i) {
            auto c = static_cast<unsigned char>(line[i]);
            bool line_end = i + 1 == line.size();
            char token[3];
            size_t token_length = 1;
            if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !line_end)) {
                token[0] = static_cast<char>(c);
            } else {
                static constexpr char digits[] = "0123456789ABCDEF";
                token[0] = '=';
                token[1] = digits[c >> 4];
                token[2] = digits[c & 0x0f];
                token_length = 3;
            }
            // The final token of a line may use the last column; any other
            // must leave room for the "=" of a soft line break.
            size_t limit = line_end ? qp_line_length : qp_line_length - 1;
            if (column + token_length > limit) {
                out += "=\r\n";
                column = 0;
            }
            out.append(token, token_length);
            column += token_length;
        }
        if (last) break;
        out += "\r\n";
        line_start = end + 2;
    }
}

// The header with Content-Transfer-Encoding set to `encoding` in place of
// the first such field (later duplicates dropped) or appended, and
// MIME-Version added when asked; other fields keep their bytes and order.
void write_header(const Header& header, std::string_view encoding, bool add_mime_version, std::string& out) {
    bool written = false;
    for (const Field& field : header.fields) {
        if (field.name == "content-transfer-encoding") {
            if (!written) out += fmt::format("Content-Transfer-Encoding: {}\r\n", encoding);
            written = true;
            continue;
        }
        out += field.raw;
        if (field.raw.size() < 2 || field.raw.substr(field.raw.size() - 2) != "\r\n") out += "\r\n";
    }
    if (add_mime_version) out += "MIME-Version: 1.0\r\n";
    if (!written) out += fmt::format("Content-Transfer-Encoding: {}\r\n", encoding);
    out += "\r\n";
}

struct Delimiter {
    size_t start = 0;  // first byte of the "--boundary" line
    size_t end = 0;    // just after its CRLF (or the end of the body)
    bool close = false;
};

// RFC 2046 §5.1.1: "--" boundary, then optional white space, at the start of
// a line; "--" boundary "--" closes. Everything after the close delimiter
// is epilogue.
std::vector<Delimiter> find_delimiters(std::string_view body, std::string_view boundary) {
    std::vector<Delimiter> found;
    size_t pos = 0;
    while (pos < body.size()) {
        size_t end = body.find("\r\n", pos);
        size_t next = end == std::string_view::npos ? body.size() : end + 2;
        std::string_view line = body.substr(pos, (end == std::string_view::npos ? body.size() : end) - pos);
        if (line.size() >= boundary.size() + 2 && line.substr(0, 2) == "--" && line.substr(2, boundary.size()) == boundary) {
            std::string_view rest = line.substr(boundary.size() + 2);
            bool close = rest.substr(0, 2) == "--";
            if (close) rest.remove_prefix(2);
            if (std::all_of(rest.begin(), rest.end(), is_space)) {
                found.push_back(Delimiter{pos, next, close});
                if (close) break;
            }
        }
        pos = next;
    }
    return found;
}

class Downgrader {
public:
    // Appends the 7-bit form of `entity` to out, or says why it has none.
    // `default_type` is text/plain, or message/rfc822 inside
    // multipart/digest (RFC 2046 §5.1.5).
    Status convert(std::string_view entity, size_t depth, bool digest_child, bool top, std::string& out) {
        if (depth > max_depth) return make_error(fmt::format("MIME parts nested deeper than {} levels", max_depth));
        if (is_clean(entity)) {
            out += entity;
            return {};
        }
        Header header = split_header(entity);
        if (auto what = problem(header.raw); !what.empty()) {
            return make_error(fmt::format("{} in a {} header, which cannot be converted to 7bit", what,
                                          top ? "message" : "MIME part"));
        }
        std::string_view body = entity.substr(header.body_offset);
        // RFC 2045 §4: without MIME-Version (or at least a Content-Type) the
        // top-level body is plain text.
        bool mime = !top || find_field(header, "mime-version") != nullptr || find_field(header, "content-type") != nullptr;
        ContentType type{digest_child ? "message" : "text", digest_child ? "rfc822" : "plain", std::nullopt};
        if (const Field* field = find_field(header, "content-type"); field != nullptr && mime) {
            if (auto parsed = parse_content_type(field->value)) type = std::move(*parsed);
        }
        std::string encoding = parse_encoding(header);
        bool add_mime_version = top && find_field(header, "mime-version") == nullptr;

        if (type.type == "multipart") {
            return convert_multipart(entity, header, body, type, encoding, depth, add_mime_version, out);
        }
        if (type.type == "message") {
            return make_error(fmt::format("{} in a message/{} part (RFC 2046 §5.2: it may not be re-encoded)",
                                          problem(body), type.subtype));
        }
        if (encoding != "7bit" && encoding != "8bit" && encoding != "binary") {
            if (encoding == "base64" || encoding == "quoted-printable") {
                return make_error(fmt::format("{} in a part declared {}", problem(body), encoding));
            }
            return make_error(fmt::format("{} in a part with the unknown Content-Transfer-Encoding \"{}\"", problem(body),
                                          encoding.substr(0, 40)));
        }
        write_header(header, "quoted-printable", add_mime_version, out);
        encode_quoted_printable(body, out);
        return {};
    }

private:
    Status convert_multipart(std::string_view entity, const Header& header, std::string_view body, const ContentType& type,
                             const std::string& encoding, size_t depth, bool add_mime_version, std::string& out) {
        // RFC 2045 §6.4: a multipart is 7bit, 8bit or binary, never encoded.
        if (encoding != "7bit" && encoding != "8bit" && encoding != "binary") {
            return make_error(fmt::format("multipart/{} declared with Content-Transfer-Encoding {} (RFC 2045 §6.4)",
                                          type.subtype, encoding.substr(0, 40)));
        }
        if (!type.boundary || type.boundary->empty()) {
            return make_error(fmt::format("multipart/{} without a boundary parameter", type.subtype));
        }
        std::vector<Delimiter> delimiters = find_delimiters(body, *type.boundary);
        if (delimiters.empty() || delimiters.front().close) {
            return make_error(fmt::format("multipart/{} body without any part delimited by its boundary", type.subtype));
        }

        std::string converted_body;
        size_t copied = 0;  // body bytes up to here are in converted_body
        auto copy_gap = [&](size_t until) -> Status {
            std::string_view gap = body.substr(copied, until - copied);
            if (auto what = problem(gap); !what.empty()) {
                return make_error(fmt::format("{} in the preamble or epilogue of a multipart/{}", what, type.subtype));
            }
            converted_body += gap;
            copied = until;
            return {};
        };
        bool digest = type.subtype == "digest";
        for (size_t i = 0; i < delimiters.size() && !delimiters[i].close; ++i) {
            size_t part_start = delimiters[i].end;
            size_t part_end = body.size();
            if (i + 1 < delimiters.size()) {
                // The CRLF before a delimiter belongs to it (RFC 2046 §5.1.1).
                part_end = delimiters[i + 1].start >= part_start + 2 ? delimiters[i + 1].start - 2 : part_start;
            }
            if (Status status = copy_gap(part_start); !status) return status;
            if (Status status = convert(body.substr(part_start, part_end - part_start), depth + 1, digest, false, converted_body);
                !status) {
                return status;
            }
            copied = part_end;
        }
        if (Status status = copy_gap(body.size()); !status) return status;

        // Its content is 7bit now: an "8bit"/"binary" label would be false.
        bool relabel = encoding != "7bit" && find_field(header, "content-transfer-encoding") != nullptr;
        if (relabel || add_mime_version) {
            write_header(header, "7bit", add_mime_version, out);
        } else {
            out += entity.substr(0, header.body_offset);
            if (!header.blank_line) out += "\r\n";
        }
        out += converted_body;
        return {};
    }
};

}  // namespace

bool has_8bit(std::string_view message) {
    return std::any_of(message.begin(), message.end(), [](char c) { return is_8bit_byte(static_cast<unsigned char>(c)); });
}

Result<std::string> downgrade_to_7bit(std::string_view message) {
    if (!has_8bit(message)) return std::string(message);
    std::string out;
    out.reserve(message.size() + message.size() / 4);
    Downgrader downgrader;
    if (Status status = downgrader.convert(message, 0, false, true, out); !status) {
        return make_error(fmt::format("cannot convert 8-bit message to 7bit: {}", status.error()));
    }
    return out;
}

}  // namespace facteur::mime
