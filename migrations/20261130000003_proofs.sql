-- Signed proofs (JWS, Ed25519): of deposit, set when the document is stored; of reading, set
-- when the read receipt is recorded. Kept with the message so that every later status and the
-- status search hand out the same proof.
ALTER TABLE messages ADD COLUMN proof_of_deposit text;
ALTER TABLE messages ADD COLUMN proof_of_reading text;
