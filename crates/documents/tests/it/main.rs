//! Integration tests: real documents from `../shared/data/docs` and hostile inputs built here.

#![expect(clippy::print_stderr, reason = "a skipped test says why on stderr")]

mod hostile;
mod real_files;

use std::path::PathBuf;

/// `../shared/data/docs` next to the repository, when present.
fn docs_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/docs");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {} is absent", dir.display());
        None
    }
}

/// A minimal PDF with one page per entry: a text line (Helvetica), or line art only for an
/// empty string. With `encrypt`, the trailer names a standard security handler whose keys do
/// not match the empty password.
pub fn minimal_pdf(pages: &[&str], encrypt: bool) -> Vec<u8> {
    let mut objects: Vec<String> = Vec::new();
    let page_ids: Vec<usize> = (0..pages.len()).map(|i| 4 + 2 * i).collect();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".to_owned());
    let kids: Vec<String> = page_ids.iter().map(|id| format!("{id} 0 R")).collect();
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        kids.join(" "),
        pages.len()
    ));
    objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned());
    for (index, text) in pages.iter().enumerate() {
        let content_id = page_ids[index] + 1;
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {content_id} 0 R >>"
        ));
        let stream = if text.is_empty() {
            "0 0 m 200 200 l S".to_owned()
        } else {
            format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET")
        };
        objects.push(format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ));
    }
    let encrypt_id = objects.len() + 1;
    if encrypt {
        objects.push(format!(
            "<< /Filter /Standard /V 1 /R 2 /O <{o}> /U <{u}> /P -44 >>",
            o = "11".repeat(32),
            u = "22".repeat(32)
        ));
    }
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", index + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    let encrypt_entry = if encrypt {
        format!(" /Encrypt {encrypt_id} 0 R")
    } else {
        String::new()
    };
    let id = "ab".repeat(16);
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R{encrypt_entry} /ID [<{id}> <{id}>] >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}
