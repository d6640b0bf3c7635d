//! The FAT32 reader `verify` reads the ESP with must never panic or walk
//! forever on any image, and a file it reads fits in the image.
//!
//! Each input is tried twice: as it is, and with a boot sector the reader
//! accepts (signature, 512-byte sectors, a geometry that fits the input), so
//! the fuzzer spends its time on FAT chains and directory entries.
#![no_main]

use image_formats::fat::FatReader;
use libfuzzer_sys::fuzz_target;

fn read(img: &[u8]) {
    let Ok(fs) = FatReader::new(img) else {
        return;
    };
    if let Ok(files) = fs.walk() {
        for f in files {
            if let Ok(body) = fs.read_file(&f) {
                assert!(body.len() <= img.len());
            }
        }
    }
    for dir in 0..4 {
        let _ = fs.list(dir);
    }
    let _ = fs.read_file("EFI/BOOT/BOOTX64.EFI");
}

fuzz_target!(|data: &[u8]| {
    read(data);
    if data.len() < 1024 {
        return;
    }
    let mut img = data.to_vec();
    let sectors = u32::try_from(img.len() / 512).unwrap_or(u32::MAX);
    let reserved = 1 + u16::from(img[14] % 4);
    let fat_size = 1 + u32::from(img[36] % 2);
    img[11..13].copy_from_slice(&512u16.to_le_bytes());
    img[13] = 1 << (img[13] % 3);
    img[14..16].copy_from_slice(&reserved.to_le_bytes());
    img[16] = 1 + img[16] % 2;
    img[32..36].copy_from_slice(&sectors.to_le_bytes());
    img[36..40].copy_from_slice(&fat_size.to_le_bytes());
    let root = 2 + u32::from(img[44] % 4);
    img[44..48].copy_from_slice(&root.to_le_bytes());
    img[510..512].copy_from_slice(&[0x55, 0xAA]);
    read(&img);
});
