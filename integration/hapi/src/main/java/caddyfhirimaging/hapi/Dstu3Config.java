package caddyfhirimaging.hapi;

import ca.uhn.fhir.jpa.config.dstu3.JpaDstu3Config;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;

/**
 * HAPI's FHIR DSTU3 (STU3, 3.0.2) configuration, chosen with HAPI_FHIR_VERSION=dstu3: the same JPA
 * server with the STU3 resource providers, search parameters and FhirContext.forDstu3Cached().
 */
@Configuration
@Import(JpaDstu3Config.class)
public class Dstu3Config {}
