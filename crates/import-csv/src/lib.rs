//! Reads CSV lead lists as real tools write them — German Excel, trade-fair scanners,
//! purchased lists — for `POST /api/leads/imports`.
//!
//! The crate decodes, splits, maps headers to lead fields and normalises common spellings of
//! values. It validates nothing: the app feeds each record through the single-create validation,
//! which explains refusals in the words the user wrote.
//!
//! ```
//! use freshplan_import_csv::{Field, Options, Sheet};
//!
//! // "Straße" in Windows-1252, as German Excel saves "CSV (Trennzeichen-getrennt)".
//! let bytes = b"Firma;Stra\xdfe;Land\r\nM\xfcller GmbH;Hauptstr. 1;Deutschland\r\n";
//! let sheet = Sheet::parse(bytes, &Options::default()).unwrap();
//! assert_eq!((sheet.encoding(), sheet.delimiter()), ("windows-1252", ';'));
//! let record = sheet.records().next().unwrap().unwrap();
//! assert_eq!(record.line, 2);
//! assert_eq!(record.get(Field::CompanyName), Some("Müller GmbH"));
//! assert_eq!(Field::CountryCode.normalise(record.get(Field::CountryCode).unwrap()), "DE");
//! ```
//!
//! # Decoding
//! A byte order mark wins (UTF-8, or UTF-16 as Excel's "Unicode text" writes it); then the
//! `charset` of the request ([`Options::charset`], any WHATWG label: `utf-8`, `windows-1252`,
//! `iso-8859-1`, `latin1`, `cp1252`, …, where the Latin-1 labels mean Windows-1252); else the
//! file is UTF-8 when it is valid UTF-8, and Windows-1252 otherwise — German Excel's default.
//! Bytes that are not valid in a declared or marked encoding are [`SheetError::Malformed`].
//!
//! # Splitting
//! The delimiter is the most frequent of `;`, `,` and tab on the header line, outside quotes
//! (ties prefer `;`, then `,`), unless the file starts with Excel's `sep=X` line. Quoted cells
//! may hold delimiters, doubled quotes and line breaks; a quote opening a cell that is never
//! closed is [`SheetError::Malformed`] naming the quote's line (the `csv` crate alone would read
//! the rest of the file into that cell). Rows may be shorter or longer than the header (cells
//! beyond the header are ignored); blank rows and rows of empty cells (`;;;;`) are skipped.
//! Cells are trimmed (Unicode white space, no-break space included) and empty cells left out.
//!
//! # Header mapping
//! A header is compared after lower-casing it, folding accented Latin-1 letters (`ä` → `a`,
//! `ß` → `ss`, `é` → `e`, …) and dropping everything but `a`–`z` and `0`–`9`, so `E-Mail`,
//! `e_mail` and `E Mail` are all `email`, and `Straße`, `Strasse` are `strasse`. It then
//! matches the field's API name so normalised (`companyname`, `postalcode`, …) or an alias:
//!
//! | field | aliases |
//! | --- | --- |
//! | `companyName` | firma, firmenname, unternehmen, company, name, kunde, betrieb, organisation, organization, aussteller |
//! | `contactPerson` | ansprechpartner, ansprechperson, kontakt, kontaktperson, contact, contactname, person |
//! | `email` | mail, emailadresse, emailaddress |
//! | `phone` | telefon, tel, telnr, telefonnr, telefonnummer, phonenumber, mobil, mobiltelefon, mobile, handy |
//! | `website` | webseite, homepage, internet, url, web |
//! | `street` | strasse, str, adresse, anschrift, address, streetaddress |
//! | `postalCode` | plz, postleitzahl, zip, zipcode, postcode |
//! | `city` | ort, stadt, town, wohnort |
//! | `countryCode` | land, country, staat, landeskennzeichen |
//! | `businessType` | betriebsart, betriebstyp, branchetyp, type, typ |
//! | `kitchenSize` | kuchengrosse, kuechengroesse, kuche, kueche, kitchen |
//! | `employeeCount` | mitarbeiter, mitarbeiterzahl, anzahlmitarbeiter, beschaftigte, beschaeftigte, employees, staff |
//! | `estimatedVolume` | volumen, umsatz, jahresvolumen, geschatztesvolumen, geschaetztesvolumen, volume, potenzial, potential |
//! | `industry` | branche, sector, sektor |
//! | `source` | quelle, herkunft, leadquelle |
//! | `sourceCampaign` | kampagne, aktion, messe, campaign |
//! | `emailConsent` | einwilligung, emaileinwilligung, werbeeinwilligung, optin, consent, dsgvoeinwilligung, newsletter |
//! | `registeredAt` | registriertam, erfasstam, datum, registered, createdat |
//! | `ownerUserId` | besitzer, inhaber, vertriebler, verantwortlich, betreuer, owner, ownerid, assignedto |
//!
//! An explicit [`Options::mapping`] wins: its headers take their fields first, and a column
//! that only an alias maps to a field the mapping already gave to another column is left
//! unmapped (it shows in [`Sheet::unknown_columns`]). Two columns on one field are
//! [`SheetError::DuplicateColumn`]; a file without a company-name column is
//! [`SheetError::NoCompanyColumn`]. Mapping entries whose header the file lacks are ignored.
//!
//! # Values
//! [`Field::normalise`] turns common spellings into the API's: [`yes_no`], [`country`],
//! [`decimal`], [`integer`], [`business_type`], [`kitchen_size`], [`source`], [`timestamp`].

mod field;
mod value;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use encoding_rs::{DecoderResult, Encoding, UTF_8, WINDOWS_1252};

pub use field::Field;
pub use value::{
    business_type, country, decimal, integer, kitchen_size, source, timestamp, yes_no,
};

use field::{from_key, normalise_key};

/// The data-row limit of [`Options::default`].
pub const DEFAULT_MAX_ROWS: usize = 50_000;

/// How to read a file.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `charset` parameter of the request's Content-Type, if any (`utf-8`, `windows-1252`,
    /// `iso-8859-1`, `latin1`, `cp1252`, …, case-insensitive); a label the WHATWG Encoding
    /// Standard does not know is [`SheetError::UnknownCharset`].
    pub charset: Option<String>,
    /// Explicit header → field mapping sent with the request; it wins over the alias table.
    /// Headers are matched by the alias table's normalisation.
    pub mapping: Vec<(String, Field)>,
    /// The most data records allowed; more is [`SheetError::TooManyRows`] from
    /// [`Sheet::parse`], before any record is handed out.
    pub max_rows: usize,
}

impl Default for Options {
    /// No charset, no mapping, [`DEFAULT_MAX_ROWS`].
    fn default() -> Options {
        Options {
            charset: None,
            mapping: Vec::new(),
            max_rows: DEFAULT_MAX_ROWS,
        }
    }
}

/// Why a file cannot be imported; every message is a sentence for the person who sent it.
#[derive(Debug, thiserror::Error)]
pub enum SheetError {
    /// The file has no header line.
    #[error("the file is empty: it needs a first line naming the columns")]
    Empty,
    /// The request declared a character set the importer does not know.
    #[error(
        "the character set \"{0}\" is unknown; save the file as UTF-8 or Windows-1252 (Excel's \"CSV (Trennzeichen-getrennt)\")"
    )]
    UnknownCharset(String),
    /// The file has more data rows than [`Options::max_rows`].
    #[error("the file has more than {limit} data rows; split it into smaller files")]
    TooManyRows {
        /// [`Options::max_rows`].
        limit: usize,
    },
    /// Two columns map to the same field.
    #[error(
        "the columns \"{first}\" and \"{second}\" both hold the field {field}; remove one or map it to another field"
    )]
    DuplicateColumn {
        /// The field both name.
        field: Field,
        /// The header of the first such column, as written.
        first: String,
        /// The header of the second such column, as written.
        second: String,
    },
    /// No column maps to [`Field::CompanyName`].
    #[error(
        "no column holds the company name; name it \"Firma\" or \"companyName\", or map a column to companyName"
    )]
    NoCompanyColumn,
    /// The file cannot be split or decoded at a line.
    #[error("line {line} of the file cannot be read: {message}")]
    Malformed {
        /// The 1-based physical line of the problem.
        line: u64,
        /// What is wrong there.
        message: String,
    },
    /// A mapping names something that is not a lead field (see [`Field`]'s `FromStr`).
    #[error("the mapping names \"{0}\", which is not a lead field")]
    UnknownMappingTarget(String),
}

impl fmt::Display for Field {
    /// The API name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

impl FromStr for Field {
    type Err = SheetError;

    /// The field of an exact API name, for mappings sent as text.
    fn from_str(s: &str) -> Result<Field, SheetError> {
        Field::from_api_name(s).ok_or_else(|| SheetError::UnknownMappingTarget(s.to_owned()))
    }
}

/// A header cell and the field it fills, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The header as written, trimmed.
    pub header: String,
    /// The field the column fills; `None` for a column the import ignores.
    pub field: Option<Field>,
}

/// One data row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The 1-based physical line number where the record starts in the file (the header is line
    /// 1 unless blank lines or a `sep=` line precede it; blank lines and the line breaks inside
    /// quoted cells count).
    pub line: u64,
    /// The mapped, trimmed, non-empty cells of this record, in column order.
    pub values: Vec<(Field, String)>,
}

impl Record {
    /// The text of `field` in this record, if the cell is there and not empty.
    pub fn get(&self, field: Field) -> Option<&str> {
        self.values
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    }
}

/// A decoded CSV file whose header is mapped and whose rows are counted within the limit.
#[derive(Debug)]
pub struct Sheet {
    text: String,
    encoding: &'static Encoding,
    delimiter: u8,
    columns: Vec<Column>,
    /// Byte offset of the first data row, right after the header record.
    body_start: usize,
    /// The physical line at `body_start`.
    body_line: u64,
    count: usize,
}

impl Sheet {
    /// Decodes `bytes`, finds the delimiter, maps the header and counts the data rows, so a
    /// file over [`Options::max_rows`] or with an unclosed quote is refused before anything is
    /// imported.
    pub fn parse(bytes: &[u8], options: &Options) -> Result<Sheet, SheetError> {
        let (text, encoding) = decode(bytes, options.charset.as_deref())?;
        let (start, delimiter) = sep_line(&text).unwrap_or_else(|| (0, detect_delimiter(&text)));
        if let Some(line) = unclosed_quote(&text.as_bytes()[start..], delimiter) {
            let line = line + line_at(&text, start) - 1;
            return Err(SheetError::Malformed {
                line,
                message: "a cell opens a quote (\") there that is never closed".to_owned(),
            });
        }
        let mut reader = reader(&text[start..], delimiter);
        let mut header = csv::StringRecord::new();
        loop {
            if !reader
                .read_record(&mut header)
                .map_err(|e| csv_error(&text, start, &e))?
            {
                return Err(SheetError::Empty);
            }
            if !is_blank(&header) {
                break;
            }
        }
        let body_start = offset_in(text.as_bytes(), start, Some(reader.position()));
        let columns = map_columns(&header, &options.mapping)?;
        let mut sheet = Sheet {
            body_line: line_at(&text, body_start),
            text,
            encoding,
            delimiter,
            columns,
            body_start,
            count: 0,
        };
        let mut count = 0;
        for record in sheet.records() {
            record?;
            count += 1;
            if count > options.max_rows {
                return Err(SheetError::TooManyRows {
                    limit: options.max_rows,
                });
            }
        }
        sheet.count = count;
        Ok(sheet)
    }

    /// The encoding the file was read in: `"UTF-8"`, `"windows-1252"`, or `"UTF-16LE"`/
    /// `"UTF-16BE"` for a file with a UTF-16 byte order mark.
    pub fn encoding(&self) -> &'static str {
        self.encoding.name()
    }

    /// The cell delimiter: `;`, `,` or tab (or the character of a `sep=` line).
    pub fn delimiter(&self) -> char {
        char::from(self.delimiter)
    }

    /// Every header cell in order, with its field or `None`.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The non-empty headers mapped to no field, in column order.
    pub fn unknown_columns(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| c.field.is_none() && !c.header.is_empty())
            .map(|c| c.header.as_str())
            .collect()
    }

    /// The data records, in file order, blank rows skipped.
    pub fn records(&self) -> Records<'_> {
        Records {
            sheet: self,
            reader: reader(&self.text[self.body_start..], self.delimiter),
            record: csv::StringRecord::new(),
            offset: self.body_start,
            line: self.body_line,
            done: false,
        }
    }

    /// The number of data records; [`Sheet::parse`] counted them already, so this does not fail
    /// once a sheet exists (the `Result` keeps callers that count before importing unchanged).
    pub fn count_records(&self) -> Result<usize, SheetError> {
        Ok(self.count)
    }
}

/// The records of a [`Sheet`]; see [`Sheet::records`].
#[derive(Debug)]
pub struct Records<'a> {
    sheet: &'a Sheet,
    reader: csv::Reader<&'a [u8]>,
    record: csv::StringRecord,
    /// A byte offset into the sheet's text, and its physical line.
    offset: usize,
    line: u64,
    done: bool,
}

impl Iterator for Records<'_> {
    type Item = Result<Record, SheetError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.reader.read_record(&mut self.record) {
                Ok(true) if is_blank(&self.record) => {}
                Ok(true) => return Some(Ok(self.current())),
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    let sheet = self.sheet;
                    return Some(Err(csv_error(&sheet.text, sheet.body_start, &e)));
                }
            }
        }
        None
    }
}

impl Records<'_> {
    /// The record just read, with the line it starts on.
    fn current(&mut self) -> Record {
        // The reader's position is where it started reading: before the line break ending the
        // previous record and any blank lines, none of which the record starts on.
        let text = self.sheet.text.as_bytes();
        let mut start = offset_in(text, self.sheet.body_start, self.record.position());
        start += text[start..]
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        self.line += count_newlines(&text[self.offset..start]);
        self.offset = start;
        let values = self
            .sheet
            .columns
            .iter()
            .zip(self.record.iter())
            .filter_map(|(column, cell)| {
                let cell = cell.trim();
                Some((column.field?, cell.to_owned())).filter(|_| !cell.is_empty())
            })
            .collect();
        Record {
            line: self.line,
            values,
        }
    }
}

/// Decodes `bytes` (see the crate doc) and names the encoding used.
fn decode(bytes: &[u8], charset: Option<&str>) -> Result<(String, &'static Encoding), SheetError> {
    // A declared label must be one the Encoding Standard knows, even when a byte order mark
    // then decides: a typo in the request is reported, not silently ignored.
    let declared = match charset {
        Some(label) => {
            let label = label.trim().trim_matches('"');
            Some(
                Encoding::for_label_no_replacement(label.as_bytes())
                    .ok_or_else(|| SheetError::UnknownCharset(label.to_owned()))?,
            )
        }
        None => None,
    };
    if let Some((encoding, bom)) = Encoding::for_bom(bytes) {
        return decode_strict(encoding, &bytes[bom..]).map(|text| (text, encoding));
    }
    let encoding = match declared {
        Some(encoding) => encoding,
        None => match String::from_utf8(bytes.to_vec()) {
            Ok(text) => return Ok((text, UTF_8)),
            Err(_) => WINDOWS_1252,
        },
    };
    decode_strict(encoding, bytes).map(|text| (text, encoding))
}

/// `bytes` in `encoding`, refusing malformed input with the line it is on.
fn decode_strict(encoding: &'static Encoding, bytes: &[u8]) -> Result<String, SheetError> {
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut text = String::new();
    let mut rest = bytes;
    loop {
        let needed = decoder
            .max_utf8_buffer_length_without_replacement(rest.len())
            .unwrap_or(rest.len());
        text.reserve(needed);
        let (result, read) = decoder.decode_to_string_without_replacement(rest, &mut text, true);
        rest = &rest[read..];
        match result {
            DecoderResult::InputEmpty => return Ok(text),
            DecoderResult::OutputFull => {}
            DecoderResult::Malformed(..) => {
                return Err(SheetError::Malformed {
                    line: 1 + count_newlines(text.as_bytes()),
                    message: format!(
                        "the text there is not valid {}, the encoding the upload declares; \
                         save the file again as \"CSV UTF-8\" and upload it once more",
                        encoding.name()
                    ),
                });
            }
        }
    }
}

/// The start of the header and the delimiter of an Excel `sep=X` first line.
fn sep_line(text: &str) -> Option<(usize, u8)> {
    let end = text.find('\n').unwrap_or(text.len());
    let line = text[..end].trim_end_matches('\r');
    if !line.get(..4)?.eq_ignore_ascii_case("sep=") {
        return None;
    }
    match line.as_bytes()[4..] {
        [b] if (b.is_ascii_punctuation() && b != b'"') || b == b'\t' => {
            Some(((end + 1).min(text.len()), b))
        }
        _ => None,
    }
}

/// The most frequent of `;`, `,` and tab on the first non-blank line, outside quotes; ties
/// and a line without any prefer `;`, then `,`.
fn detect_delimiter(text: &str) -> u8 {
    let mut counts = [(b';', 0usize), (b',', 0), (b'\t', 0)];
    let mut in_quotes = false;
    for b in text.trim_start_matches(['\r', '\n']).bytes() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\r' | b'\n' if !in_quotes => break,
            _ if !in_quotes => {
                if let Some((_, n)) = counts.iter_mut().find(|(d, _)| *d == b) {
                    *n += 1;
                }
            }
            _ => {}
        }
    }
    let mut best = counts[0];
    for candidate in &counts[1..] {
        if candidate.1 > best.1 {
            best = *candidate;
        }
    }
    best.0
}

/// The 1-based line of the opening quote of a quoted cell never closed, following the csv
/// crate's rules: a quote opens a quoted cell only as the cell's first character, `""` inside
/// is a quote, and the next lone quote closes it.
fn unclosed_quote(text: &[u8], delimiter: u8) -> Option<u64> {
    let mut line = 1;
    let mut cell_start = true;
    let mut open = None;
    let mut bytes = text.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if open.is_some() {
            if b == b'"' && bytes.next_if_eq(&b'"').is_none() {
                open = None;
                cell_start = false;
            }
        } else if b == b'"' && cell_start {
            open = Some(line);
        } else {
            cell_start = matches!(b, b'\r' | b'\n') || b == delimiter;
        }
        if b == b'\n' {
            line += 1;
        }
    }
    open
}

/// The columns of `header`: explicit mapping first, then the alias table for fields the
/// mapping did not give to a column of this file.
fn map_columns(
    header: &csv::StringRecord,
    mapping: &[(String, Field)],
) -> Result<Vec<Column>, SheetError> {
    let mapping: Vec<(String, Field)> = mapping
        .iter()
        .map(|(h, f)| (normalise_key(h), *f))
        .collect();
    let keys: Vec<String> = header.iter().map(normalise_key).collect();
    let explicit: Vec<Option<Field>> = keys
        .iter()
        .map(|key| {
            let found = mapping.iter().find(|(k, _)| !key.is_empty() && k == key);
            found.map(|(_, field)| *field)
        })
        .collect();
    let columns: Vec<Column> = header
        .iter()
        .zip(keys.iter().zip(&explicit))
        .map(|(cell, (key, explicit_field))| Column {
            header: cell.trim().to_owned(),
            field: explicit_field
                .or_else(|| from_key(key).filter(|f| !explicit.contains(&Some(*f)))),
        })
        .collect();
    let mut seen: BTreeMap<Field, &str> = BTreeMap::new();
    for column in &columns {
        let Some(field) = column.field else { continue };
        if let Some(first) = seen.insert(field, &column.header) {
            return Err(SheetError::DuplicateColumn {
                field,
                first: first.to_owned(),
                second: column.header.clone(),
            });
        }
    }
    if !seen.contains_key(&Field::CompanyName) {
        return Err(SheetError::NoCompanyColumn);
    }
    Ok(columns)
}

/// A reader of headerless, flexible records over `text`.
fn reader(text: &str, delimiter: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes())
}

/// Every cell empty or white space.
fn is_blank(record: &csv::StringRecord) -> bool {
    record.iter().all(|cell| cell.trim().is_empty())
}

/// The offset in `text` of a position of a reader started at `start`.
fn offset_in(text: &[u8], start: usize, position: Option<&csv::Position>) -> usize {
    let byte = position.map_or(0, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX));
    start.saturating_add(byte).min(text.len())
}

/// The 1-based line of byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> u64 {
    1 + count_newlines(&text.as_bytes()[..offset])
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

/// A csv crate error as [`SheetError::Malformed`]. With in-memory UTF-8 input and flexible
/// rows the crate has nothing left to refuse, so this is a safety net.
fn csv_error(text: &str, start: usize, error: &csv::Error) -> SheetError {
    let line = line_at(text, offset_in(text.as_bytes(), start, error.position()));
    SheetError::Malformed {
        line,
        message: format!("the row cannot be split into cells ({error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Sheet, SheetError> {
        Sheet::parse(bytes, &Options::default())
    }

    fn records(sheet: &Sheet) -> Vec<Record> {
        sheet.records().collect::<Result<_, _>>().expect("records")
    }

    fn windows_1252(text: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = WINDOWS_1252.encode(text);
        assert!(!unmappable);
        bytes.into_owned()
    }

    #[test]
    fn reads_a_german_excel_file() {
        let text = "Firma;Ansprechpartner;E-Mail;Telefon;Straße;PLZ;Ort;Land;Betriebsart;Mitarbeiter;Einwilligung;Volumen\r\n\
            \"Müller; Söhne GmbH\";Jürgen Groß;jg@example.de;+49 30 123;Hauptstraße 5;10115;Berlin;Deutschland;Gaststätte;1.200;ja;12.000\r\n\
            Café Öztürk ; ;info@oz.de;;\"Königsallee 1\r\nHinterhaus\";40212;Düsseldorf;D;Café;12;x;\"1.234,56 €\";;\r\n\
            \r\n\
            Bäckerei Weiß;\u{a0}Ärger\u{a0};;;;;;;;;nein;\r\n\
            ;;;;\r\n\
            \"Kantine \"\"Zum Löwen\"\"\";;;;;;;;;;;\r\n";
        let bytes = windows_1252(text);
        assert!(bytes.contains(&0xdf) && std::str::from_utf8(&bytes).is_err());
        let sheet = parse(&bytes).expect("sheet");
        assert_eq!(sheet.encoding(), "windows-1252");
        assert_eq!(sheet.delimiter(), ';');
        let fields: Vec<_> = sheet.columns().iter().map(|c| c.field).collect();
        use Field::*;
        let expected = [
            CompanyName,
            ContactPerson,
            Email,
            Phone,
            Street,
            PostalCode,
            City,
            CountryCode,
            BusinessType,
            EmployeeCount,
            EmailConsent,
            EstimatedVolume,
        ];
        assert_eq!(fields, expected.map(Some));
        assert_eq!(sheet.columns()[4].header, "Straße");
        assert!(sheet.unknown_columns().is_empty());
        assert_eq!(sheet.count_records().expect("count"), 4);

        let records = records(&sheet);
        let lines: Vec<u64> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 6, 8]);
        let first = &records[0];
        assert_eq!(first.values.len(), 12);
        assert_eq!(first.get(CompanyName), Some("Müller; Söhne GmbH"));
        assert_eq!(first.get(ContactPerson), Some("Jürgen Groß"));
        assert_eq!(first.get(Street), Some("Hauptstraße 5"));
        let normalised: Vec<String> = first.values.iter().map(|(f, v)| f.normalise(v)).collect();
        assert_eq!(
            normalised[7..],
            ["DE", "RESTAURANT", "1200", "true", "12000"]
        );
        let second = &records[1];
        assert_eq!(
            second.values,
            [
                (CompanyName, "Café Öztürk".to_owned()),
                (Email, "info@oz.de".to_owned()),
                (Street, "Königsallee 1\r\nHinterhaus".to_owned()),
                (PostalCode, "40212".to_owned()),
                (City, "Düsseldorf".to_owned()),
                (CountryCode, "D".to_owned()),
                (BusinessType, "Café".to_owned()),
                (EmployeeCount, "12".to_owned()),
                (EmailConsent, "x".to_owned()),
                (EstimatedVolume, "1.234,56 €".to_owned()),
            ]
        );
        assert_eq!(EstimatedVolume.normalise("1.234,56 €"), "1234.56");
        assert_eq!(
            records[2].values,
            [
                (CompanyName, "Bäckerei Weiß".to_owned()),
                (ContactPerson, "Ärger".to_owned()),
                (EmailConsent, "nein".to_owned()),
            ]
        );
        assert_eq!(
            records[3].values,
            [(CompanyName, "Kantine \"Zum Löwen\"".to_owned())]
        );
    }

    #[test]
    fn reads_an_english_utf8_file_with_bom() {
        let text = "\u{feff}Company,Contact,Email,Phone,Country,Business type,Employees,Consent,Notes\n\
            \"Acme, Inc.\",Jane Doe,jane@acme.test,+41 44 000,Switzerland,Catering,1200,yes,call back\n\
            Beta AG,,,,CH,hotel,12,no,\n";
        let sheet = parse(text.as_bytes()).expect("sheet");
        assert_eq!((sheet.encoding(), sheet.delimiter()), ("UTF-8", ','));
        assert_eq!(sheet.columns()[0].header, "Company");
        assert_eq!(sheet.columns()[5].field, Some(Field::BusinessType));
        assert_eq!(sheet.unknown_columns(), ["Notes"]);
        let records = records(&sheet);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].line, 2);
        assert_eq!(records[0].get(Field::CompanyName), Some("Acme, Inc."));
        assert_eq!(records[0].values.len(), 8);
        let beta: Vec<(Field, String)> = records[1]
            .values
            .iter()
            .map(|(f, v)| (*f, f.normalise(v)))
            .collect();
        assert_eq!(
            beta,
            [
                (Field::CompanyName, "Beta AG".to_owned()),
                (Field::CountryCode, "CH".to_owned()),
                (Field::BusinessType, "HOTEL".to_owned()),
                (Field::EmployeeCount, "12".to_owned()),
                (Field::EmailConsent, "false".to_owned()),
            ]
        );
    }

    #[test]
    fn decodes_latin1_bytes_and_honours_the_declared_charset() {
        let sheet = parse(b"Firma\n\xe4\xf6\xfc\xdf\xc4\n").expect("sheet");
        assert_eq!(sheet.encoding(), "windows-1252");
        assert_eq!(records(&sheet)[0].get(Field::CompanyName), Some("äöüßÄ"));

        let utf8 = "Firma\nMüller\n".as_bytes();
        for label in [
            "windows-1252",
            "ISO-8859-1",
            "latin1",
            "cp1252",
            " \"Windows-1252\" ",
        ] {
            let options = Options {
                charset: Some(label.to_owned()),
                ..Options::default()
            };
            let sheet = Sheet::parse(utf8, &options).expect("sheet");
            assert_eq!(sheet.encoding(), "windows-1252", "{label}");
            assert_eq!(records(&sheet)[0].get(Field::CompanyName), Some("MÃ¼ller"));
        }

        let declared_utf8 = Options {
            charset: Some("UTF-8".to_owned()),
            ..Options::default()
        };
        let error = Sheet::parse(b"Firma\nA\nM\xfcller\n", &declared_utf8).expect_err("invalid");
        assert!(
            matches!(error, SheetError::Malformed { line: 3, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "line 3 of the file cannot be read: the text there is not valid UTF-8, the encoding \
             the upload declares; save the file again as \"CSV UTF-8\" and upload it once more"
        );

        let klingon = Options {
            charset: Some("klingon".to_owned()),
            ..Options::default()
        };
        let error = Sheet::parse(utf8, &klingon).expect_err("unknown");
        assert!(matches!(&error, SheetError::UnknownCharset(c) if c == "klingon"));

        // A byte order mark wins over the declared charset.
        let mut bom = b"\xef\xbb\xbf".to_vec();
        bom.extend_from_slice(utf8);
        let sheet = Sheet::parse(
            &bom,
            &Options {
                charset: Some("latin1".into()),
                ..Options::default()
            },
        )
        .expect("sheet");
        assert_eq!(sheet.encoding(), "UTF-8");
        assert_eq!(records(&sheet)[0].get(Field::CompanyName), Some("Müller"));
    }

    #[test]
    fn decodes_utf16_with_bom() {
        let mut bytes = vec![0xff, 0xfe];
        bytes.extend(
            "Firma\tOrt\r\nMüller\tKöln\r\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        );
        let sheet = parse(&bytes).expect("sheet");
        assert_eq!((sheet.encoding(), sheet.delimiter()), ("UTF-16LE", '\t'));
        assert_eq!(records(&sheet)[0].get(Field::City), Some("Köln"));
    }

    #[test]
    fn detects_delimiters() {
        let one_column = parse(b"Firma\nM\xfcller, Meier & Co\n").expect("sheet");
        assert_eq!(one_column.delimiter(), ';');
        assert_eq!(
            records(&one_column)[0].get(Field::CompanyName),
            Some("Müller, Meier & Co")
        );
        assert_eq!(parse(b"Firma;Ort,Stadt\n").expect("tie").delimiter(), ';');
        assert_eq!(
            parse(b"\"Firma\",\"Ort;Stadt\",PLZ\n")
                .expect("quoted")
                .delimiter(),
            ','
        );
        assert_eq!(
            parse(b"\n\nFirma\tOrt\tPLZ;X\n").expect("tab").delimiter(),
            '\t'
        );

        let sheet = parse(b"sep=,\nFirma,Ort;Land\nA,B;C\n").expect("sep line");
        assert_eq!(sheet.delimiter(), ',');
        let record = &records(&sheet)[0];
        assert_eq!(record.line, 3);
        assert_eq!(record.get(Field::City), None);
        assert_eq!(sheet.unknown_columns(), ["Ort;Land"]);
    }

    #[test]
    fn counts_lines_across_lf_breaks_blank_lines_and_quoted_cells() {
        let text = "\nFirma,Notiz,Ort\nA,\"eins\nzwei\n\ndrei\",X\n\n\n  \nB\n\n\"C\",,\"\"\"Y\"\"\"\n,nur Notiz\n";
        let sheet = parse(text.as_bytes()).expect("sheet");
        let records = records(&sheet);
        let lines: Vec<u64> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 10, 12, 13]);
        assert_eq!(records[0].get(Field::City), Some("X"));
        assert_eq!(records[2].get(Field::City), Some("\"Y\""));
        assert!(records[3].values.is_empty());
        assert_eq!(sheet.count_records().expect("count"), 4);
    }

    #[test]
    fn ignores_empty_trailing_headers_and_extra_cells() {
        let sheet = parse(b"Firma;Ort;;\r\nA;B;C;D;E\r\nF\r\n").expect("sheet");
        assert_eq!(sheet.columns().len(), 4);
        assert_eq!(
            sheet.columns()[3],
            Column {
                header: String::new(),
                field: None
            }
        );
        assert!(sheet.unknown_columns().is_empty());
        let records = records(&sheet);
        assert_eq!(records[0].values.len(), 2);
        assert_eq!(records[1].values, [(Field::CompanyName, "F".to_owned())]);
    }

    #[test]
    fn explicit_mapping_wins_over_aliases() {
        let error = parse(b"Firma;Name;Ort\nA;B;C\n").expect_err("two company columns");
        assert!(matches!(
            &error,
            SheetError::DuplicateColumn { field: Field::CompanyName, first, second }
                if first == "Firma" && second == "Name"
        ));
        assert_eq!(
            error.to_string(),
            "the columns \"Firma\" and \"Name\" both hold the field companyName; remove one or map it to another field"
        );

        let options = Options {
            mapping: vec![("NAME".to_owned(), Field::ContactPerson)],
            ..Options::default()
        };
        let sheet = Sheet::parse(b"Firma;Name;Ort\nA;B;C\n", &options).expect("mapped");
        let fields: Vec<_> = sheet.columns().iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                Some(Field::CompanyName),
                Some(Field::ContactPerson),
                Some(Field::City)
            ]
        );

        // The mapping gives companyName to "Kd.-Nr."; the alias column "Firma" is left out.
        let options = Options {
            mapping: vec![
                ("kd nr".to_owned(), Field::CompanyName),
                ("Not in the file".to_owned(), Field::City),
            ],
            ..Options::default()
        };
        let sheet = Sheet::parse(b"Kd.-Nr.;Firma;Ort\n4711;A;B\n", &options).expect("mapped");
        assert_eq!(sheet.unknown_columns(), ["Firma"]);
        let record = &records(&sheet)[0];
        assert_eq!(
            record.values,
            [
                (Field::CompanyName, "4711".to_owned()),
                (Field::City, "B".to_owned())
            ]
        );

        let options = Options {
            mapping: vec![
                ("Ort".to_owned(), Field::Phone),
                ("PLZ".to_owned(), Field::Phone),
            ],
            ..Options::default()
        };
        let error = Sheet::parse(b"Firma;Ort;PLZ\n", &options).expect_err("two phone columns");
        assert!(matches!(
            error,
            SheetError::DuplicateColumn {
                field: Field::Phone,
                ..
            }
        ));

        assert_eq!("postalCode".parse::<Field>().ok(), Some(Field::PostalCode));
        let error = "plz".parse::<Field>().expect_err("not an API name");
        assert_eq!(
            error.to_string(),
            "the mapping names \"plz\", which is not a lead field"
        );
    }

    #[test]
    fn refuses_files_without_header_or_company_column() {
        for empty in [&b""[..], b"\r\n\r\n", b"\xef\xbb\xbf", b" ; ;\n\n"] {
            assert!(matches!(parse(empty), Err(SheetError::Empty)), "{empty:?}");
        }
        let error = parse(b"Ort;PLZ\nBerlin;10115\n").expect_err("no company");
        assert!(matches!(error, SheetError::NoCompanyColumn));
        assert_eq!(
            SheetError::Empty.to_string(),
            "the file is empty: it needs a first line naming the columns"
        );
    }

    #[test]
    fn refuses_more_rows_than_allowed() {
        let file = b"Firma\nA\nB\n\nC\nD\n";
        let options = Options {
            max_rows: 3,
            ..Options::default()
        };
        let error = Sheet::parse(file, &options).expect_err("four rows");
        assert!(matches!(error, SheetError::TooManyRows { limit: 3 }));
        assert_eq!(
            error.to_string(),
            "the file has more than 3 data rows; split it into smaller files"
        );
        let options = Options {
            max_rows: 4,
            ..Options::default()
        };
        let sheet = Sheet::parse(file, &options).expect("four rows");
        assert_eq!(sheet.count_records().expect("count"), 4);
    }

    #[test]
    fn refuses_an_unclosed_quote_at_its_line() {
        let error = parse(b"Firma;Ort\r\nA;B\r\n\"Offen;Berlin\r\nC;D\r\n").expect_err("unclosed");
        assert!(
            matches!(error, SheetError::Malformed { line: 3, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "line 3 of the file cannot be read: a cell opens a quote (\") there that is never closed"
        );
        let error = parse(b"sep=;\nFirma;Ort\n\"A\";\"B\"\"\nC;D\n").expect_err("unclosed");
        assert!(
            matches!(error, SheetError::Malformed { line: 3, .. }),
            "{error:?}"
        );
        // A quote inside an unquoted cell, or after a closed one, is text as the csv crate reads it.
        let sheet = parse(b"Firma;Ort\nZoll 5\" GmbH;\"K\"\xf6ln\n").expect("literal quotes");
        let record = &records(&sheet)[0];
        assert_eq!(record.get(Field::CompanyName), Some("Zoll 5\" GmbH"));
        assert_eq!(record.get(Field::City), Some("Köln"));
    }

    #[test]
    fn reads_fifty_thousand_rows() {
        let mut file = String::from("Firma;PLZ;Ort;Land\r\n");
        for i in 0..DEFAULT_MAX_ROWS {
            file.push_str(&format!("Firma {i};{:05};Berlin;DE\r\n", i % 100_000));
        }
        let sheet = parse(file.as_bytes()).expect("sheet");
        assert_eq!(sheet.count_records().expect("count"), DEFAULT_MAX_ROWS);
        let last = sheet.records().last().expect("a record").expect("ok");
        assert_eq!(last.line, 50_001);
        assert_eq!(last.get(Field::CompanyName), Some("Firma 49999"));

        file.push_str("Firma 50000;;;\r\n");
        let error = parse(file.as_bytes()).expect_err("one too many");
        assert!(matches!(error, SheetError::TooManyRows { limit: 50_000 }));
    }

    #[test]
    fn the_crate_doc_lists_every_alias() {
        let doc = include_str!("lib.rs");
        for field in Field::ALL {
            let row = format!("//! | `{}` |", field.api_name());
            let line = doc.lines().find(|l| l.starts_with(&row));
            let line = line.unwrap_or_else(|| panic!("no doc row for {field}"));
            let listed: Vec<&str> = line[row.len()..]
                .trim_end_matches(" |")
                .split(", ")
                .map(str::trim)
                .collect();
            for alias in field::aliases(field) {
                assert!(listed.contains(&alias), "{alias} of {field} not documented");
            }
            assert_eq!(listed.len(), field::aliases(field).len(), "{field}");
        }
    }
}
