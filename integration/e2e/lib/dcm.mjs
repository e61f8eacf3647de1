// Synthetic DICOM made on the spot with dcmtk's dump2dcm (as integration/data/make-studies.sh
// makes the suite's studies): one 64x64 16-bit CT instance per call.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const CT = '1.2.840.10008.5.1.4.1.1.2';

/**
 * Instance number n of series <study>.1 (series number 3) of a study, for a patient
 * (PatientID), studied on 2024-06-01: its Part 10 bytes as a Buffer. Files go to dir.
 */
export function makeInstance(dir, n, { study, patient }) {
  const series = `${study}.1`;
  const raw = join(dir, `${n}.raw`);
  const px = Buffer.alloc(64 * 64 * 2);
  for (let i = 0; i < 64 * 64; i++) px.writeUInt16LE((i * 7 + n * 401) % 4096, i * 2);
  writeFileSync(raw, px);
  const dump = [
    '(0002,0010) UI =LittleEndianExplicit',
    '(0008,0016) UI ' + CT,
    `(0008,0018) UI ${series}.${n}`,
    '(0008,0020) DA [20240601]',
    '(0008,0030) TM [093000]',
    '(0008,0060) CS [CT]',
    '(0008,1030) LO [Registered through the gateway]',
    '(0008,103e) LO [Stored series]',
    '(0010,0010) PN [Synthetic^Dave]',
    `(0010,0020) LO [${patient}]`,
    `(0020,000d) UI ${study}`,
    `(0020,000e) UI ${series}`,
    '(0020,0011) IS [3]',
    `(0020,0013) IS [${n}]`,
    '(0028,0002) US 1',
    '(0028,0004) CS [MONOCHROME2]',
    '(0028,0010) US 64',
    '(0028,0011) US 64',
    '(0028,0100) US 16',
    '(0028,0101) US 12',
    '(0028,0102) US 11',
    '(0028,0103) US 0',
    `(7fe0,0010) OW =${raw}`,
  ].join('\n');
  writeFileSync(join(dir, `${n}.dump`), dump + '\n');
  execFileSync('dump2dcm', ['-q', '+te', join(dir, `${n}.dump`), join(dir, `${n}.dcm`)]);
  return readFileSync(join(dir, `${n}.dcm`));
}

/** The ArrayBuffer of a Buffer's bytes, as dicomweb-client's storeInstances takes them. */
export const arrayBuffer = (b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
